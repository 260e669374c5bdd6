package main

import (
	"fmt"
	"runtime"

	"github.com/hxp-ai/hxp/engine"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func init() {
	register(command{name: "version", summary: "print version and build information", run: func(args []string) error {
		fs := newFlags("version", "")
		if err := fs.Parse(args); err != nil {
			return err
		}
		fmt.Printf("hxp %s (%s, %s/%s)\nllama.cpp: %s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, engine.SystemInfo())
		return nil
	}})
}
