package grpc

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
)

// healthServer is grpc.health.v1.Health over the service's models: the empty service
// name (and hxp.v1.Inference) is the process, SERVING until it shuts down; a model's
// name is that model's readiness (SERVING when ready). Check reads the models at
// each call; Watch polls them every watchEvery.
type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
	svc      infer.Service
	draining atomic.Bool
}

// watchEvery is how often Watch re-reads the models' states.
const watchEvery = time.Second

func newHealthServer(svc infer.Service) *healthServer { return &healthServer{svc: svc} }

func (h *healthServer) setDraining() { h.draining.Store(true) }

// statusOf is the serving status of service, and false when it is unknown.
func (h *healthServer) status(ctx context.Context, service string) (grpc_health_v1.HealthCheckResponse_ServingStatus, bool) {
	if service == "" || service == hxpv1.Inference_ServiceDesc.ServiceName {
		if h.draining.Load() {
			return grpc_health_v1.HealthCheckResponse_NOT_SERVING, true
		}
		return grpc_health_v1.HealthCheckResponse_SERVING, true
	}
	for _, m := range h.svc.Models(ctx) {
		if m.ID != service {
			continue
		}
		if m.Ready() && !h.draining.Load() {
			return grpc_health_v1.HealthCheckResponse_SERVING, true
		}
		return grpc_health_v1.HealthCheckResponse_NOT_SERVING, true
	}
	return grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN, false
}

// Check implements grpc_health_v1.HealthServer.
func (h *healthServer) Check(ctx context.Context, r *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	st, ok := h.status(ctx, r.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q: the empty name is the process, a model's name that model", r.GetService())
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}

// List implements grpc_health_v1.HealthServer: the process and every model.
func (h *healthServer) List(ctx context.Context, _ *grpc_health_v1.HealthListRequest) (*grpc_health_v1.HealthListResponse, error) {
	out := &grpc_health_v1.HealthListResponse{Statuses: map[string]*grpc_health_v1.HealthCheckResponse{}}
	names := []string{""}
	for _, m := range h.svc.Models(ctx) {
		names = append(names, m.ID)
	}
	for _, n := range names {
		st, _ := h.status(ctx, n)
		out.Statuses[n] = &grpc_health_v1.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch implements grpc_health_v1.HealthServer: the status now, then each change,
// until the client leaves (an unknown service is SERVICE_UNKNOWN until it appears).
func (h *healthServer) Watch(r *grpc_health_v1.HealthCheckRequest, st grpc_health_v1.Health_WatchServer) error {
	ctx := st.Context()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	last := grpc_health_v1.HealthCheckResponse_ServingStatus(-1)
	for {
		cur, _ := h.status(ctx, r.GetService())
		if cur != last {
			if err := st.Send(&grpc_health_v1.HealthCheckResponse{Status: cur}); err != nil {
				return err
			}
			last = cur
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
