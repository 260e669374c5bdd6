package limits

// Settle waits until l has no backend call in flight, for tests that send one request at a
// time and want each to see the answers of the calls before it.
func Settle(l *Leased) { l.wg.Wait() }
