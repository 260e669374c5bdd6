package gpu

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSource stands in for NVML, which needs a GPU this machine lacks.
type fakeSource struct {
	devs []Device
	tel  map[int]Telemetry
	fail map[int]bool
}

func (f *fakeSource) Devices() ([]Device, error) { return f.devs, nil }
func (f *fakeSource) Close() error               { return nil }
func (f *fakeSource) Telemetry(i int) (Telemetry, error) {
	if f.fail[i] {
		return Telemetry{}, errors.New("GPU is lost")
	}
	return f.tel[i], nil
}

func TestCollectorGPUSeries(t *testing.T) {
	g1 := h100
	g1.Index, g1.Name = 1, "NVIDIA L4"
	src := &fakeSource{
		devs: []Device{h100, g1},
		tel: map[int]Telemetry{
			0: {MemUsed: 60 << 30, MemTotal: 80 << 30, UtilRatio: 0.75, TempC: 61, PowerW: 412.5},
			1: {MemUsed: 1 << 30, MemTotal: 22 << 30, UtilRatio: 0.1, TempC: 40, PowerW: math.NaN()}, // power unsupported
		},
	}
	c, err := NewCollector(src)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP hxp_gpu_memory_used_bytes Device memory in use, in bytes (system memory for gpu="cpu").
# TYPE hxp_gpu_memory_used_bytes gauge
hxp_gpu_memory_used_bytes{gpu="0",name="NVIDIA H100 80GB HBM3"} 6.442450944e+10
hxp_gpu_memory_used_bytes{gpu="1",name="NVIDIA L4"} 1.073741824e+09
# HELP hxp_gpu_power_watts Device power draw, in watts.
# TYPE hxp_gpu_power_watts gauge
hxp_gpu_power_watts{gpu="0",name="NVIDIA H100 80GB HBM3"} 412.5
# HELP hxp_gpu_temperature_celsius Device temperature, in degrees Celsius.
# TYPE hxp_gpu_temperature_celsius gauge
hxp_gpu_temperature_celsius{gpu="0",name="NVIDIA H100 80GB HBM3"} 61
hxp_gpu_temperature_celsius{gpu="1",name="NVIDIA L4"} 40
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricMemoryUsed, MetricPower, MetricTemperature); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 9 {
		t.Errorf("series = %d, want 5 + 4 (no power for GPU 1)", n)
	}

	// A device whose memory cannot be read drops out of that scrape; the others stay.
	src.fail = map[int]bool{1: true}
	if n := testutil.CollectAndCount(c, MetricMemoryTotal); n != 1 {
		t.Errorf("memory_total series with GPU 1 failing = %d, want 1", n)
	}
	if err := c.LastError(); err == nil || !strings.Contains(err.Error(), "GPU 1") {
		t.Errorf("LastError = %v", err)
	}
}

func TestCollectorCPUFallback(t *testing.T) {
	src, err := NewCPUSource("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCollector(src)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["gpu"] != "cpu" || labels["name"] == "" {
				t.Errorf("%s labels %v", mf.GetName(), labels)
			}
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	// CPU: memory and utilisation; no temperature or power.
	if len(got) != 3 {
		t.Fatalf("series %v, want memory used/total and utilisation", got)
	}
	b, _ := os.ReadFile("/proc/meminfo")
	total, _, _ := parseMeminfo(b)
	if got[MetricMemoryTotal] != float64(total) || got[MetricMemoryUsed] <= 0 || got[MetricMemoryUsed] >= float64(total) {
		t.Errorf("memory used %v total %v, MemTotal %d", got[MetricMemoryUsed], got[MetricMemoryTotal], total)
	}
	if u := got[MetricUtilization]; u < 0 || u > 1 {
		t.Errorf("utilisation %v outside 0..1", u)
	}
}
