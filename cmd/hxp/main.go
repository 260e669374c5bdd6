// Command hxp is the HXP LLM server: it serves GGUF models through llama.cpp behind an
// OpenAI-compatible gateway, and carries the operator tools (model generation, key
// management, planning, benchmarks) in the same binary.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// command is one `hxp` subcommand. Names may have two words ("models gen"); each
// subcommand lives in its own file and registers itself from init.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("hxp: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by how the command was called; main exits 2 for it.
var errUsage = errors.New("usage")

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	rest := args[1:]
	if len(args) > 1 {
		if _, ok := commands[args[0]+" "+args[1]]; ok {
			name, rest = args[0]+" "+args[1], args[2:]
		}
	}
	c, ok := commands[name]
	if !ok {
		if group := groupUsage(name); group != "" {
			fmt.Fprint(os.Stderr, group)
			return 2
		}
		fmt.Fprintf(os.Stderr, "hxp: unknown command %q; run `hxp --help` for the list\n", name)
		return 2
	}
	if err := c.run(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "hxp %s: %v\n", name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func sortedNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func usage() {
	fmt.Fprintln(os.Stderr, "hxp: self-hosted LLM server (llama.cpp engine, OpenAI-compatible gateway)")
	fmt.Fprintln(os.Stderr, "\nUsage: hxp COMMAND [flags]   (hxp COMMAND --help for its flags)")
	fmt.Fprintln(os.Stderr, "\nCommands:")
	for _, n := range sortedNames() {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, commands[n].summary)
	}
}

// groupUsage lists the subcommands of a group such as "models", or returns "".
func groupUsage(group string) string {
	var b strings.Builder
	for _, n := range sortedNames() {
		if strings.HasPrefix(n, group+" ") {
			fmt.Fprintf(&b, "  %-16s %s\n", n, commands[n].summary)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return fmt.Sprintf("Usage: hxp %s SUBCOMMAND [flags]\n\nSubcommands:\n%s", group, b.String())
}

// newFlags returns a flag set for a subcommand whose errors are returned, not fatal.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("hxp "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: hxp %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a subcommand's arguments. A bad flag is a usage error (exit 2),
// --help is flag.ErrHelp (exit 0), and with maxArgs 0 any positional argument is a
// usage error (-1 leaves positional arguments to the caller).
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if maxArgs == 0 && fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
