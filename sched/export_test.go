package sched

// Plan is the plan of the step being evaluated; read it from Config.StepHook (the
// loop's goroutine).
func (s *Scheduler) Plan() StepPlan { return s.plan }
