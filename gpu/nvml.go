//go:build cgo

package gpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlSource reads GPUs through NVML. go-nvml dlopens libnvidia-ml.so.1 at Init, so the
// binary starts on hosts without a driver; only this file needs cgo (go-nvml's own).
type nvmlSource struct {
	lib     nvml.Interface
	handles map[int]nvml.Device
	static  []Device // name, UUID and total memory do not change while the process runs

	closeOnce sync.Once
	closeErr  error
}

// OpenNVML initialises NVML and enumerates its GPUs. It fails with an error wrapping
// ErrNoNVML when the library or driver is missing or no GPU is visible; the caller then
// falls back to the CPU source. Close the source to shut NVML down.
func OpenNVML() (Source, error) {
	lib := nvml.New()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: init: %s", ErrNoNVML, nvmlErrString(ret))
	}
	s := &nvmlSource{lib: lib, handles: map[int]nvml.Device{}}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		s.Close()
		return nil, fmt.Errorf("%w: device count: %s", ErrNoNVML, nvmlErrString(ret))
	}
	if n == 0 {
		s.Close()
		return nil, fmt.Errorf("%w: driver loaded but no GPU is visible", ErrNoNVML)
	}
	for i := range n {
		h, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			s.Close()
			return nil, fmt.Errorf("gpu: NVML handle of device %d: %s", i, nvmlErrString(ret))
		}
		d := Device{Index: i, Kind: KindGPU}
		if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
			d.Name = "unknown GPU"
		}
		if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
			d.UUID = ""
		}
		mem, ret := h.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			s.Close()
			return nil, fmt.Errorf("gpu: NVML memory of device %d: %s", i, nvmlErrString(ret))
		}
		d.TotalBytes, d.FreeBytes = mem.Total, mem.Free
		s.handles[i] = h
		s.static = append(s.static, d)
	}
	return s, nil
}

// Devices returns every GPU with its free memory read now.
func (s *nvmlSource) Devices() ([]Device, error) {
	out := make([]Device, 0, len(s.static))
	for _, d := range s.static {
		mem, ret := s.handles[d.Index].GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("gpu: NVML memory of device %d: %s", d.Index, nvmlErrString(ret))
		}
		d.TotalBytes, d.FreeBytes = mem.Total, mem.Free
		out = append(out, d)
	}
	return out, nil
}

// Telemetry reads memory, utilisation, temperature and power of one GPU. Only a memory
// read failure is an error; the other fields are NaN where the GPU does not support them.
func (s *nvmlSource) Telemetry(index int) (Telemetry, error) {
	h, ok := s.handles[index]
	if !ok {
		return Telemetry{}, fmt.Errorf("gpu: no NVML device %d", index)
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Telemetry{}, fmt.Errorf("gpu: NVML memory of device %d: %s", index, nvmlErrString(ret))
	}
	t := Telemetry{MemUsed: mem.Used, MemTotal: mem.Total, UtilRatio: math.NaN(), TempC: math.NaN(), PowerW: math.NaN()}
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		t.UtilRatio = float64(u.Gpu) / 100
	}
	if c, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		t.TempC = float64(c)
	}
	if mw, ret := h.GetPowerUsage(); ret == nvml.SUCCESS {
		t.PowerW = float64(mw) / 1000
	}
	return t, nil
}

// Close shuts NVML down; later calls return the first call's result.
func (s *nvmlSource) Close() error {
	s.closeOnce.Do(func() {
		if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
			s.closeErr = fmt.Errorf("gpu: NVML shutdown: %s", nvmlErrString(ret))
		}
	})
	return s.closeErr
}

func nvmlErrString(r nvml.Return) string {
	if r == nvml.ERROR_LIBRARY_NOT_FOUND {
		return "libnvidia-ml.so.1 not found (no NVIDIA driver)"
	}
	return r.Error()
}
