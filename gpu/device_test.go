package gpu

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		total, free uint64
		wantErr     bool
	}{
		{"modern", "MemTotal:       24684084 kB\nMemFree:        22991400 kB\nMemAvailable:   23890540 kB\n", 24684084 << 10, 23890540 << 10, false},
		{"no MemAvailable", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n", 1000 << 10, 150 << 10, false},
		{"available above total is clamped", "MemTotal: 10 kB\nMemAvailable: 20 kB\n", 10 << 10, 10 << 10, false},
		{"no MemTotal", "MemFree: 100 kB\n", 0, 0, true},
		{"garbage", "hello\n: :\n", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			total, free, err := parseMeminfo([]byte(tc.in))
			if (err != nil) != tc.wantErr || total != tc.total || free != tc.free {
				t.Fatalf("got %d, %d, %v; want %d, %d, err=%v", total, free, err, tc.total, tc.free, tc.wantErr)
			}
		})
	}
}

func TestCPUSourceFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(path, []byte("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewCPUSource(path)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := s.Devices()
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v, %v", devs, err)
	}
	d := devs[0]
	if d.Kind != KindCPU || d.TotalBytes != 2<<20 || d.FreeBytes != 1<<20 || d.Cores != runtime.NumCPU() || d.Label() != "cpu" {
		t.Fatalf("device %+v", d)
	}
	tel, err := s.Telemetry(0)
	if err != nil || tel.MemUsed != 1<<20 || tel.MemTotal != 2<<20 {
		t.Fatalf("telemetry %+v, %v", tel, err)
	}
	if b, err := json.Marshal(d); err != nil || !strings.Contains(string(b), `"kind":"cpu"`) {
		t.Errorf("device JSON %s, %v", b, err)
	}
	if _, err := s.Telemetry(1); err == nil {
		t.Error("telemetry of device 1 succeeded")
	}
	if _, err := NewCPUSource(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing meminfo accepted")
	}
}

// TestDiscoverFallsBackToCPU runs on machines without an NVIDIA driver (such as CI): NVML
// fails and Discover reports the host from /proc/meminfo.
func TestDiscoverFallsBackToCPU(t *testing.T) {
	if src, err := OpenNVML(); err == nil {
		src.Close()
		t.Skip("NVML works on this machine; TestNVMLOnRealGPU covers it")
	} else if !errors.Is(err, ErrNoNVML) {
		t.Fatalf("OpenNVML error %v does not wrap ErrNoNVML", err)
	}
	devs, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 {
		t.Fatalf("want one CPU device, got %+v", devs)
	}
	d := devs[0]
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	total, _, err := parseMeminfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if ht, ha, err := HostMemory(); err != nil || ht != total || ha == 0 || ha > ht {
		t.Fatalf("HostMemory = %d, %d, %v; MemTotal %d", ht, ha, err, total)
	}
	if d.Kind != KindCPU || d.TotalBytes != total || d.FreeBytes == 0 || d.FreeBytes > d.TotalBytes ||
		d.Cores != runtime.NumCPU() || d.Name == "" || d.Label() != "cpu" {
		t.Fatalf("CPU device %+v (MemTotal %d)", d, total)
	}
	src, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	cpu, ok := src.(*CPUSource)
	if !ok || !errors.Is(cpu.NVMLError(), ErrNoNVML) {
		t.Fatalf("Open returned %T, NVML error %v", src, cpu.NVMLError())
	}
	// The discovered device plans a small model on CPU.
	p, err := NewPlan([]ModelSpec{{Name: "tiny", Info: fixtureInfo(t, archSpec{arch: "llama", nLayer: 2, nEmbd: 256, nHead: 4, nHeadKV: 4,
		nFF: 512, nVocab: 512, nCtxTrain: 2048}), CPUCores: 1, Parallel: 2, CtxPerSeq: 512, GPULayers: -1}}, devs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Models[0]; !p.Fits() || m.NGPULayers != 0 || m.Device.Kind != KindCPU {
		t.Fatalf("tiny model on this host:\n%s", p.Table())
	}
}
