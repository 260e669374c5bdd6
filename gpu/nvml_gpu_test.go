package gpu

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNVMLOnRealGPU exercises the real NVML path. It needs an NVIDIA GPU and driver, so it
// runs only with HXP_TEST_GPU=1 (set on the GPU test machines).
func TestNVMLOnRealGPU(t *testing.T) {
	if os.Getenv("HXP_TEST_GPU") != "1" {
		t.Skip("needs an NVIDIA GPU and driver; set HXP_TEST_GPU=1 to run")
	}
	src, err := OpenNVML()
	if err != nil {
		t.Fatalf("OpenNVML: %v", err)
	}
	defer src.Close()
	devs, err := src.Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	for _, d := range devs {
		if d.Kind != KindGPU || d.TotalBytes == 0 || d.FreeBytes > d.TotalBytes || d.Name == "" || !strings.HasPrefix(d.UUID, "GPU-") {
			t.Errorf("device %+v", d)
		}
		tel, err := src.Telemetry(d.Index)
		if err != nil {
			t.Fatalf("telemetry %d: %v", d.Index, err)
		}
		if tel.MemTotal != d.TotalBytes || tel.MemUsed > tel.MemTotal {
			t.Errorf("telemetry %+v vs device %+v", tel, d)
		}
		if tel.UtilRatio < 0 || tel.UtilRatio > 1 || tel.TempC <= 0 || tel.TempC > 120 {
			t.Errorf("telemetry out of range: %+v", tel)
		}
	}
	found, err := Discover()
	if err != nil || len(found) != len(devs) || found[0].Kind != KindGPU {
		t.Fatalf("Discover = %+v, %v", found, err)
	}
	c, err := NewCollector(src)
	if err != nil {
		t.Fatal(err)
	}
	// Memory used/total are always there; utilisation, temperature and power where supported.
	if n := testutil.CollectAndCount(c, MetricMemoryUsed, MetricMemoryTotal); n != 2*len(devs) {
		t.Errorf("memory series = %d, want %d", n, 2*len(devs))
	}
	if c.LastError() != nil {
		t.Errorf("scrape error: %v", c.LastError())
	}
}
