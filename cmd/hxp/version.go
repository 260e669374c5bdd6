package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/engine"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func init() {
	register(command{name: "version", summary: "print version, build and compute devices", run: func(args []string) error {
		fs := newFlags("version", "")
		if err := parseFlags(fs, args, 0); err != nil {
			return err
		}
		loadBackend(zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel))
		fmt.Printf("hxp %s (%s, %s/%s)\nllama.cpp: %s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, engine.SystemInfo())
		for _, d := range engine.Devices() {
			kind := "cpu"
			if d.GPU {
				kind = "gpu"
			}
			fmt.Printf("device: %s (%s, %s, %.1f/%.1f GiB free)\n", d.Name, d.Description, kind,
				float64(d.FreeBytes)/(1<<30), float64(d.TotalBytes)/(1<<30))
		}
		return nil
	}})
}
