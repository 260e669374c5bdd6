package gpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by Collector.
const (
	MetricMemoryUsed  = "hxp_gpu_memory_used_bytes"
	MetricMemoryTotal = "hxp_gpu_memory_total_bytes"
	MetricUtilization = "hxp_gpu_utilization_ratio"
	MetricTemperature = "hxp_gpu_temperature_celsius"
	MetricPower       = "hxp_gpu_power_watts"
)

// Collector is a prometheus.Collector that reads device telemetry at scrape time. Each
// series carries the labels gpu (the index, or "cpu" for the CPU fallback) and name.
// Readings a device does not support (temperature and power of the CPU device, for
// instance) are left out; when a device's memory cannot be read, that device exports
// nothing in that scrape and LastError reports why.
type Collector struct {
	src     Source
	devices []Device

	used, total, util, temp, power *prometheus.Desc

	mu      sync.Mutex
	lastErr error
}

// NewCollector lists src's devices once (names and indexes do not change while the
// process runs) and returns a collector for them. The caller keeps ownership of src.
func NewCollector(src Source) (*Collector, error) {
	devs, err := src.Devices()
	if err != nil {
		return nil, fmt.Errorf("gpu: collector: %w", err)
	}
	labels := []string{"gpu", "name"}
	return &Collector{
		src:     src,
		devices: devs,
		used:    prometheus.NewDesc(MetricMemoryUsed, "Device memory in use, in bytes (system memory for gpu=\"cpu\").", labels, nil),
		total:   prometheus.NewDesc(MetricMemoryTotal, "Device memory size, in bytes (system memory for gpu=\"cpu\").", labels, nil),
		util:    prometheus.NewDesc(MetricUtilization, "Share of the last sample period the device was busy, 0 to 1.", labels, nil),
		temp:    prometheus.NewDesc(MetricTemperature, "Device temperature, in degrees Celsius.", labels, nil),
		power:   prometheus.NewDesc(MetricPower, "Device power draw, in watts.", labels, nil),
	}, nil
}

// Describe sends the five metric descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.used, c.total, c.util, c.temp, c.power} {
		ch <- d
	}
}

// Collect reads every device now and sends its series.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var firstErr error
	for _, d := range c.devices {
		t, err := c.src.Telemetry(d.Index)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("gpu: telemetry of %s: %w", devName(d), err)
			}
			continue
		}
		lv := []string{d.Label(), d.Name}
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(t.MemUsed), lv...)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(t.MemTotal), lv...)
		for _, m := range []struct {
			desc *prometheus.Desc
			v    float64
		}{{c.util, t.UtilRatio}, {c.temp, t.TempC}, {c.power, t.PowerW}} {
			if !math.IsNaN(m.v) {
				ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, m.v, lv...)
			}
		}
	}
	c.mu.Lock()
	c.lastErr = firstErr
	c.mu.Unlock()
}

// LastError returns the first telemetry error of the latest scrape, or nil.
func (c *Collector) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Devices returns the devices the collector reports.
func (c *Collector) Devices() []Device { return append([]Device(nil), c.devices...) }
