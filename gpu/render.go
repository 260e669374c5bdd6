package gpu

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Table renders the plan for an operator: one row per model (need against limit), one
// row per device (planned against free), the cpu_cores check, then every reason, problem,
// warning and piece of advice, and a final verdict line.
func (p Plan) Table() string {
	var b strings.Builder
	_ = p.WriteTable(&b) // a strings.Builder does not fail
	return b.String()
}

// WriteTable writes Table's text to w.
func (p Plan) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tDEVICE\tGPU LAYERS\tPARALLEL x CTX\tKV TYPE\tWEIGHTS\tKV\tCOMPUTE\tTOTAL\tLIMIT\tSTATUS")
	for _, m := range p.Models {
		ctx := fmt.Sprintf("%d x %d", m.Parallel, m.CtxPerSeq)
		if m.Parallel != m.RequestedParallel || m.CtxPerSeq != m.RequestedCtxPerSeq {
			ctx += fmt.Sprintf(" (asked %d x %d)", m.RequestedParallel, m.RequestedCtxPerSeq)
		}
		limit := "none"
		if m.LimitBytes > 0 {
			limit = gib(m.LimitBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, devName(m.Device), m.NGPULayers,
			m.Info.BlockCount+1, ctx, m.KVType, gib(m.Need.Weights), gib(m.Need.KV), gib(m.Need.Compute),
			gib(m.Need.Total()), limit, modelStatus(m))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DEVICE\tNAME\tFREE\tRESERVE\tPLANNED\tLEFT\tSTATUS\tMODELS")
	for _, d := range p.Devices {
		status := "ok"
		left := gib(d.UsableBytes() - min(d.PlannedBytes, d.UsableBytes()))
		if !d.Fits() {
			status = "OVER by " + gib(d.PlannedBytes-d.UsableBytes())
			left = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", devName(d.Device), d.Device.Name, gib(d.Device.FreeBytes),
			gib(d.ReserveBytes), gib(d.PlannedBytes), left, status, strings.Join(d.Models, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.HostFreeBytes > 0 {
		status := "ok"
		if p.HostPlannedBytes > p.HostFreeBytes {
			status = "OVER"
		}
		fmt.Fprintf(ew, "host RAM: %s planned for CPU-resident parts of %s available: %s\n", gib(p.HostPlannedBytes), gib(p.HostFreeBytes), status)
	}
	cores := "ok"
	if p.CoresRequested > p.HostCores {
		cores = "OVERSUBSCRIBED"
	}
	fmt.Fprintf(ew, "cpu cores: %d requested (%s) of %d on the host: %s\n", p.CoresRequested, coresList(p.Models), p.HostCores, cores)
	for _, m := range p.Models {
		if len(m.Reasons)+len(m.Problems)+len(m.Warnings)+len(m.Advice) == 0 {
			continue
		}
		fmt.Fprintf(ew, "\n%s:\n", m.Name)
		writeNotes(ew, "changed", m.Reasons)
		writeNotes(ew, "problem", m.Problems)
		writeNotes(ew, "warning", m.Warnings)
		writeNotes(ew, "advice", m.Advice)
	}
	if len(p.Problems)+len(p.Advice) > 0 {
		fmt.Fprint(ew, "\nhost:\n")
		writeNotes(ew, "problem", p.Problems)
		writeNotes(ew, "advice", p.Advice)
	}
	if p.Fits() {
		fmt.Fprint(ew, "\nplan: fits\n")
	} else {
		fmt.Fprint(ew, "\nplan: DOES NOT FIT\n")
	}
	return ew.err
}

func modelStatus(m ModelPlan) string {
	switch {
	case !m.Fits:
		return "DOES NOT FIT"
	case m.Device.Kind == KindGPU && m.NGPULayers < m.Info.BlockCount+1:
		return "partial offload"
	case len(m.Reasons) > 0:
		return "reduced"
	}
	return "ok"
}

func writeNotes(w io.Writer, kind string, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "  %s: %s\n", kind, n)
	}
}

// errWriter keeps the first write error so the renderer can check once at the end.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}
