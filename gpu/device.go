// Package gpu finds the accelerators of an HXP host, reads their telemetry, reads the facts
// of a GGUF model that matter for memory, and plans how the configured models share the
// host's memory (n_gpu_layers, context size and parallel slots per model).
//
// Discovery goes through NVIDIA's NVML, loaded at run time by github.com/NVIDIA/go-nvml.
// Where no driver is present (or the binary was built without cgo) the host itself is
// reported as a single CPU "device" whose memory comes from /proc/meminfo, so that the
// planner budgets system RAM instead.
package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Kind says whether a Device is a GPU or the host CPU with its system memory.
type Kind int

const (
	// KindCPU is the host CPU; its memory is system RAM.
	KindCPU Kind = iota
	// KindGPU is a discrete accelerator with its own memory, found through NVML.
	KindGPU
)

// String returns "cpu" or "gpu".
func (k Kind) String() string {
	if k == KindGPU {
		return "gpu"
	}
	return "cpu"
}

// MarshalText writes "cpu" or "gpu", so JSON plans name the kind.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Device is one place where model weights and KV cache can live.
type Device struct {
	// Index is the NVML index of a GPU (the CUDA index when CUDA_DEVICE_ORDER=PCI_BUS_ID);
	// 0 for the CPU device.
	Index int `json:"index"`
	// Name is the product name ("NVIDIA H100 80GB HBM3") or the CPU model name.
	Name string `json:"name"`
	// UUID is NVML's stable identifier ("GPU-..."); empty for the CPU device.
	UUID string `json:"uuid,omitempty"`
	// TotalBytes is the device memory (system RAM for the CPU device).
	TotalBytes uint64 `json:"total_bytes"`
	// FreeBytes is the memory free when the device was read (MemAvailable for the CPU).
	FreeBytes uint64 `json:"free_bytes"`
	// Kind is KindGPU or KindCPU.
	Kind Kind `json:"kind"`
	// Cores is the number of logical CPUs for the CPU device; 0 for a GPU.
	Cores int `json:"cores,omitempty"`
}

// Label is the value of the gpu="..." metric label: the index for a GPU, "cpu" for the host.
func (d Device) Label() string {
	if d.Kind == KindCPU {
		return "cpu"
	}
	return strconv.Itoa(d.Index)
}

// Telemetry is one reading of a device. Fields the device cannot report are NaN.
type Telemetry struct {
	// MemUsed is the memory in use, in bytes (MemTotal - MemAvailable for the CPU).
	MemUsed uint64
	// MemTotal is the memory size in bytes.
	MemTotal uint64
	// UtilRatio is the busy share of the last sample period, 0..1.
	UtilRatio float64
	// TempC is the die temperature in degrees Celsius; NaN when unknown.
	TempC float64
	// PowerW is the power draw in watts; NaN when unknown.
	PowerW float64
}

// Source lists devices and reads their telemetry. NVML and the CPU fallback implement it.
type Source interface {
	// Devices lists the devices with their current free memory.
	Devices() ([]Device, error)
	// Telemetry reads one device, named by its Device.Index.
	Telemetry(index int) (Telemetry, error)
	// Close releases the source (NVML's shutdown).
	Close() error
}

// ErrNoNVML reports that NVML could not be used: no driver, no library, or a build without cgo.
var ErrNoNVML = errors.New("gpu: NVML unavailable")

// Open returns the NVML source when NVML initialises and reports at least one GPU, and a
// *CPUSource otherwise; CPUSource.NVMLError then says why NVML was not used. It fails only
// when the CPU fallback cannot read /proc/meminfo either.
func Open() (Source, error) {
	src, nvmlErr := OpenNVML()
	if nvmlErr == nil {
		return src, nil
	}
	cpu, err := NewCPUSource("")
	if err != nil {
		return nil, errors.Join(nvmlErr, fmt.Errorf("gpu: CPU fallback: %w", err))
	}
	cpu.nvmlErr = nvmlErr
	return cpu, nil
}

// Discover lists the host's GPUs through NVML. Without a usable NVML it returns the CPU
// device (system memory from /proc/meminfo, runtime.NumCPU cores) instead; it fails only
// when neither works.
func Discover() ([]Device, error) {
	src, err := Open()
	if err != nil {
		return nil, fmt.Errorf("gpu: discover: %w", err)
	}
	defer src.Close()
	devs, err := src.Devices()
	if err != nil {
		return nil, fmt.Errorf("gpu: discover: %w", err)
	}
	return devs, nil
}

// HostMemory returns the host's total and available memory (MemTotal and MemAvailable from
// /proc/meminfo), for Options.HostFreeBytes on a GPU host.
func HostMemory() (total, available uint64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: read meminfo: %w", err)
	}
	total, available, err = parseMeminfo(b)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: parse /proc/meminfo: %w", err)
	}
	return total, available, nil
}

// CPUSource reports the host as one device, reading memory from a meminfo file and CPU
// load from /proc/stat. It is safe for concurrent use.
type CPUSource struct {
	meminfo string
	name    string
	cores   int
	nvmlErr error

	mu       sync.Mutex
	lastBusy uint64
	lastAll  uint64
}

// NewCPUSource returns a CPU source reading meminfoPath ("" means /proc/meminfo). It fails
// when the file cannot be read or lacks MemTotal.
func NewCPUSource(meminfoPath string) (*CPUSource, error) {
	if meminfoPath == "" {
		meminfoPath = "/proc/meminfo"
	}
	s := &CPUSource{meminfo: meminfoPath, name: cpuModelName(), cores: runtime.NumCPU()}
	if _, _, err := s.memory(); err != nil {
		return nil, err
	}
	return s, nil
}

// Devices returns the single CPU device.
func (s *CPUSource) Devices() ([]Device, error) {
	total, avail, err := s.memory()
	if err != nil {
		return nil, err
	}
	return []Device{{Index: 0, Name: s.name, TotalBytes: total, FreeBytes: avail, Kind: KindCPU, Cores: s.cores}}, nil
}

// Telemetry reads memory and the CPU busy ratio since the previous call (since boot on the
// first call). Temperature and power are NaN.
func (s *CPUSource) Telemetry(index int) (Telemetry, error) {
	if index != 0 {
		return Telemetry{}, fmt.Errorf("gpu: CPU source has only device 0, not %d", index)
	}
	total, avail, err := s.memory()
	if err != nil {
		return Telemetry{}, err
	}
	t := Telemetry{MemTotal: total, MemUsed: total - min(avail, total), UtilRatio: math.NaN(), TempC: math.NaN(), PowerW: math.NaN()}
	if busy, all, err := readProcStat(); err == nil {
		s.mu.Lock()
		db, da := busy-s.lastBusy, all-s.lastAll
		if busy < s.lastBusy || all <= s.lastAll {
			db, da = busy, all
		}
		s.lastBusy, s.lastAll = busy, all
		s.mu.Unlock()
		if da > 0 {
			t.UtilRatio = float64(db) / float64(da)
		}
	}
	return t, nil
}

// NVMLError says why Open fell back to this source; nil when it was made directly.
func (s *CPUSource) NVMLError() error { return s.nvmlErr }

// Close does nothing; it exists to satisfy Source.
func (s *CPUSource) Close() error { return nil }

func (s *CPUSource) memory() (total, avail uint64, err error) {
	b, err := os.ReadFile(s.meminfo)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: read meminfo: %w", err)
	}
	total, avail, err = parseMeminfo(b)
	if err != nil {
		return 0, 0, fmt.Errorf("gpu: parse %s: %w", s.meminfo, err)
	}
	return total, avail, nil
}

// parseMeminfo returns MemTotal and MemAvailable in bytes. Kernels older than 3.14 lack
// MemAvailable; MemFree+Buffers+Cached stands in for it there.
func parseMeminfo(b []byte) (total, avail uint64, err error) {
	vals := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		vals[key] = n
	}
	total, ok := vals["MemTotal"]
	if !ok || total == 0 {
		return 0, 0, errors.New("no MemTotal")
	}
	avail, ok = vals["MemAvailable"]
	if !ok {
		avail = vals["MemFree"] + vals["Buffers"] + vals["Cached"]
	}
	return total, min(avail, total), nil
}

// readProcStat returns the busy and total jiffies of the aggregate "cpu" line.
func readProcStat() (busy, all uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("gpu: unexpected /proc/stat")
	}
	for i, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("gpu: /proc/stat field %d: %w", i+1, err)
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, all, nil
}

func cpuModelName() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				if v = strings.TrimSpace(v); v != "" {
					return v
				}
			}
		}
	}
	return runtime.GOARCH + " CPU"
}
