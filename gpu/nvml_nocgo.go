//go:build !cgo

package gpu

import "fmt"

// OpenNVML always fails in a build without cgo: go-nvml needs cgo to load libnvidia-ml.
// The caller falls back to the CPU source.
func OpenNVML() (Source, error) {
	return nil, fmt.Errorf("%w: built without cgo", ErrNoNVML)
}
