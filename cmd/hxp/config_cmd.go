package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/hxp-ai/hxp/config"
)

func init() {
	register(command{name: "config check", summary: "validate a config file (and the HXP_ environment) without serving", run: runConfigCheck})
	register(command{name: "config env", summary: "list the HXP_ environment variables that override a config", run: runConfigEnv})
}

func runConfigCheck(args []string) error {
	fs := newFlags("config check", "[--host-cores N] [--skip-files] [--no-env] FILE")
	cores := fs.Int("host-cores", 0, "check cpu_cores against a host with N cores instead of this one ("+fmt.Sprint(runtime.NumCPU())+")")
	skipFiles := fs.Bool("skip-files", false, "do not check that model and key files exist (a config for another machine)")
	noEnv := fs.Bool("no-env", false, "ignore HXP_ environment variables")
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one config file", errUsage)
	}
	if *cores < 0 {
		return fmt.Errorf("%w: --host-cores %d: must be positive", errUsage, *cores)
	}
	opts := config.Options{HostCores: *cores, SkipFiles: *skipFiles}
	if !*noEnv {
		opts.Environ = os.Environ()
	}
	path := fs.Arg(0)
	c, err := config.Load(path, opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s: OK: gateway %s, %d model(s): %s\n", path, c.Listen, len(c.Models), describeModels(c.Models))
	return nil
}

func runConfigEnv(args []string) error {
	fs := newFlags("config env", "")
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	fmt.Println("Environment variables read by hxp (applied after the YAML file, before validation).")
	fmt.Println("<NAME> is a model name in upper case, other characters than A-Z 0-9 as _ (hermes-2 -> HERMES_2).")
	fmt.Println()
	fmt.Println(strings.Join(config.EnvNames(), "\n"))
	return nil
}
