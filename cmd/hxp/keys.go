package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/connectors/redis"
)

func init() {
	register(command{name: "keys create", summary: "create an API key (printed once, alone on the last line)", run: runKeysCreate})
	register(command{name: "keys list", summary: "list API keys (never their secrets)", run: runKeysList})
	register(command{name: "keys revoke", summary: "revoke an API key by id", run: runKeysRevoke})
}

// dbFlags are the flags that name the key database.
type dbFlags struct{ url, config *string }

func addDBFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		url:    fs.String("postgres-url", "", "database URL (default $HXP_POSTGRES_URL, then the config's postgres.url)"),
		config: fs.String("config", "", "read postgres.url from this config file"),
	}
}

// keysConfig reads the connector sections of the --config file (zero without one).
func keysConfig(f dbFlags) (keysSections, error) {
	var c keysSections
	if *f.config == "" {
		return c, nil
	}
	b, err := os.ReadFile(*f.config)
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", *f.config, err)
	}
	return c, nil
}

// keysSections are the parts of a config the keys commands read.
type keysSections struct {
	Postgres config.Postgres `yaml:"postgres"`
	Redis    config.Redis    `yaml:"redis"`
}

// keysRedisURL is the Redis that gateways subscribe to for invalidations:
// HXP_REDIS_URL, then the config file's redis.url ("" for none).
func keysRedisURL(f dbFlags) string {
	if url := os.Getenv("HXP_REDIS_URL"); url != "" {
		return url
	}
	c, _ := keysConfig(f)
	return c.Redis.URL
}

// dbURL is the database named by --postgres-url, HXP_POSTGRES_URL or the config
// file's postgres.url, in that order ("" for none).
func dbURL(f dbFlags) (string, error) {
	url := *f.url
	if url == "" {
		url = os.Getenv("HXP_POSTGRES_URL")
	}
	if url == "" {
		c, err := keysConfig(f)
		if err != nil {
			return "", err
		}
		url = c.Postgres.URL
	}
	return url, nil
}

// keysDB opens the key database named by dbURL.
func keysDB(ctx context.Context, f dbFlags) (*postgres.DB, error) {
	url, err := dbURL(f)
	if err != nil {
		return nil, err
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no database: set HXP_POSTGRES_URL, pass --postgres-url or --config (or use --static)", errUsage)
	}
	return postgres.Open(ctx, url, postgres.Options{MaxConns: 2})
}

// withKeysDB runs fn with the key database open, within a 30 s deadline.
func withKeysDB(db dbFlags, fn func(context.Context, *postgres.DB) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := keysDB(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(ctx, conn)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runKeysCreate(args []string) error {
	fs := newFlags("keys create", "--name NAME [--models a,b] [--rpm N] [--tpm N] [--budget N] [--expires DURATION] [--static] [--postgres-url URL | --config FILE]")
	name := fs.String("name", "", "key name (required)")
	models := fs.String("models", "", "comma-separated models the key may use (default: all)")
	rpm := fs.Int("rpm", 0, "requests per minute per model (0: unlimited)")
	tpm := fs.Int("tpm", 0, "tokens per minute per model (0: unlimited)")
	budget := fs.Int64("budget", 0, "monthly token budget (0: unlimited)")
	expires := fs.Duration("expires", 0, "the key stops working after this long (0: never)")
	static := fs.Bool("static", false, "do not store the key: print an auth.keys entry for the config instead")
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	spec := postgres.KeySpec{Name: *name, AllowedModels: splitList(*models), RPM: *rpm, TPM: *tpm, MonthlyTokenBudget: *budget}
	if *expires < 0 {
		return fmt.Errorf("%w: --expires must be positive", errUsage)
	}
	if *expires > 0 {
		spec.ExpiresAt = time.Now().Add(*expires).UTC().Truncate(time.Second)
	}
	if err := spec.Validate(time.Now()); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *static {
		if *expires > 0 {
			return fmt.Errorf("%w: static keys do not expire; revoke them by removing them from the config", errUsage)
		}
		secret, _, err := postgres.NewKeySecret()
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(secret))
		id := strings.ToLower(strings.Join(strings.Fields(*name), "-"))
		fmt.Println("# add to the config under auth.keys (the key itself is on the next line, shown once):")
		fmt.Printf("- {id: %s, sha256: %s, models: [%s], rpm: %d, tpm: %d, monthly_token_budget: %d}\n",
			id, hex.EncodeToString(sum[:]), strings.Join(spec.AllowedModels, ", "), *rpm, *tpm, *budget)
		fmt.Println(secret)
		return nil
	}
	return withKeysDB(db, func(ctx context.Context, conn *postgres.DB) error {
		secret, k, err := conn.CreateKey(ctx, spec)
		if err != nil {
			return err
		}
		fmt.Printf("created key %s (%s); it is shown once, on the next line:\n", k.ID, k.Name)
		fmt.Println(secret)
		return nil
	})
}

func runKeysList(args []string) error {
	fs := newFlags("keys list", "[--postgres-url URL | --config FILE]")
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	return withKeysDB(db, func(ctx context.Context, conn *postgres.DB) error {
		keys, err := conn.ListKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tMODELS\tRPM\tTPM\tBUDGET\tEXPIRES\tSTATUS\tCREATED")
		now := time.Now()
		for _, k := range keys {
			models := strings.Join(k.AllowedModels, ",")
			if models == "" {
				models = "*"
			}
			status := "active"
			switch {
			case k.Disabled:
				status = "revoked"
			case k.Expired(now):
				status = "expired"
			}
			expires := "never"
			if !k.ExpiresAt.IsZero() {
				expires = k.ExpiresAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", k.ID, k.Name, models, k.RPM, k.TPM, k.MonthlyTokenBudget,
				expires, status, k.CreatedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func runKeysRevoke(args []string) error {
	fs := newFlags("keys revoke", "ID [--postgres-url URL | --config FILE]")
	db := addDBFlags(fs)
	// Accept the id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 || id == "" {
		return fmt.Errorf("%w: want exactly one key id", errUsage)
	}
	if kid := postgres.KeyIDOf(id); kid != "" {
		return fmt.Errorf("%w: that is a key's secret; pass its id (%s) instead", errUsage, kid)
	}
	return withKeysDB(db, func(ctx context.Context, conn *postgres.DB) error {
		if err := conn.RevokeKey(ctx, id); err != nil {
			if errors.Is(err, postgres.ErrKeyNotFound) {
				return fmt.Errorf("no key with id %q", id)
			}
			return err
		}
		if url := keysRedisURL(db); url != "" {
			rc, err := redis.Open(ctx, url, redis.Options{})
			if err == nil {
				err = rc.Publish(ctx, redis.Invalidation{Kind: redis.InvalidateKey, KeyID: id})
				_ = rc.Close()
			}
			if err == nil {
				fmt.Printf("revoked key %s; every gateway subscribed to Redis refuses it now\n", id)
				return nil
			}
			fmt.Fprintf(os.Stderr, "hxp keys revoke: telling the gateways through Redis failed (%v)\n", err)
		}
		fmt.Printf("revoked key %s; gateways refuse it within auth.cache_ttl (default 30s), at once where it was revoked through the admin API\n", id)
		return nil
	})
}
