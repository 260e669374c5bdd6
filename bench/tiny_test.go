package bench

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/service"
)

// tinyCore loads the generated tiny model as one model service ("tiny": one core,
// parallel slots of ctx tokens each, config defaults otherwise) and returns the core
// over it; the service is closed when the benchmark ends.
func tinyCore(b *testing.B, parallel, ctx int) infer.Service {
	b.Helper()
	c := &config.Config{Models: []config.Model{{Name: "tiny", Path: testmodel.Path(b, "tiny"), CPUCores: 1, Parallel: parallel,
		CtxPerSeq: ctx, Batch: ctx, QueueSize: 64, TargetLatencyMS: 1000}}}
	c.ApplyDefaults(1)
	svc := service.New(c.Models[0], zerolog.Nop(), service.Options{})
	if err := svc.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	return infer.NewLocal(svc)
}
