package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// EnvPrefix starts every environment variable the config reads.
const EnvPrefix = "HXP_"

// Environment overrides. Every YAML field has one, named by its path in upper case:
//
//	HXP_LISTEN, HXP_LOG_LEVEL, HXP_SERVER_MAX_BODY_BYTES, HXP_AUTH_API_KEYS_FILE, ...
//	HXP_MODELS_<NAME>_<FIELD>   e.g. HXP_MODELS_PHI3_PATH, HXP_MODELS_DEMO_CPU_CORES
//
// <NAME> is the model's name in upper case with every character other than a letter
// or digit replaced by "_" (hermes-2 -> HERMES_2). A model must exist in the file to be
// overridden. HXP_AUTH_API_KEYS holds comma-separated API keys (secrets are never read
// from the YAML). Other HXP_ variables (used by tests and tools) are ignored.
const envKeys = "HXP_AUTH_API_KEYS"

// The admin API's key and the node-to-node key, secrets read only from the
// environment or from auth.admin_key_file and auth.node_key_file.
const (
	envAdminKey = "HXP_AUTH_ADMIN_KEY"
	envNodeKey  = "HXP_AUTH_NODE_KEY"
)

// ApplyEnv applies the HXP_ variables of environ (KEY=VALUE entries) to c and returns
// the variables it could not apply.
func ApplyEnv(c *Config, environ []string) Problems {
	env := map[string]string{}
	var keys []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var problems Problems
	root := reflect.ValueOf(c).Elem()
	for _, k := range keys {
		v := env[k]
		switch {
		case k == envKeys:
			for _, key := range strings.Split(v, ",") {
				if key = strings.TrimSpace(key); key != "" {
					c.Auth.APIKeys = append(c.Auth.APIKeys, key)
				}
			}
		case k == envAdminKey:
			c.Auth.AdminKey = strings.TrimSpace(v)
		case k == envNodeKey:
			c.Auth.NodeKey = strings.TrimSpace(v)
		case strings.HasPrefix(k, EnvPrefix+"MODELS_"):
			problems = append(problems, applyModelEnv(c, k, v)...)
		default:
			if f, ok := lookupField(root, strings.TrimPrefix(k, EnvPrefix)); ok {
				if err := setField(f, v); err != nil {
					problems = append(problems, Problem{Path: k, Msg: err.Error()})
				}
			}
		}
	}
	return problems
}

// applyModelEnv applies HXP_MODELS_<NAME>_<FIELD>; the longest matching model name wins.
func applyModelEnv(c *Config, key, val string) Problems {
	rest := strings.TrimPrefix(key, EnvPrefix+"MODELS_")
	best, bestLen := -1, 0
	for i, m := range c.Models {
		p := EnvName(m.Name) + "_"
		if strings.HasPrefix(rest, p) && len(p) > bestLen {
			best, bestLen = i, len(p)
		}
	}
	if best < 0 {
		names := make([]string, len(c.Models))
		for i, m := range c.Models {
			names[i] = EnvName(m.Name)
		}
		return Problems{{Path: key, Msg: fmt.Sprintf("no configured model matches (model names here: %s)", strings.Join(names, ", "))}}
	}
	field := rest[bestLen:]
	f, ok := lookupField(reflect.ValueOf(&c.Models[best]).Elem(), field)
	if !ok || field == "NAME" {
		return Problems{{Path: key, Msg: fmt.Sprintf("unknown model field %q (fields: %s)", field, strings.Join(modelEnvFields(), ", "))}}
	}
	if err := setField(f, val); err != nil {
		return Problems{{Path: key, Msg: err.Error()}}
	}
	return nil
}

// EnvName is a model name as it appears in environment variable names.
func EnvName(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, ch := range b {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// lookupField finds the field of struct v whose upper-cased YAML path is name
// ("SERVER_MAX_BODY_BYTES"). Slices are not descended into.
func lookupField(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := yamlName(t.Field(i))
		if tag == "" {
			if t.Field(i).Anonymous && v.Field(i).Kind() == reflect.Struct { // yaml ",inline"
				if g, ok := lookupField(v.Field(i), name); ok {
					return g, true
				}
			}
			continue
		}
		up := strings.ToUpper(tag)
		f := v.Field(i)
		if name == up && isScalar(f) {
			return f, true
		}
		if f.Kind() == reflect.Struct && strings.HasPrefix(name, up+"_") {
			if g, ok := lookupField(f, strings.TrimPrefix(name, up+"_")); ok {
				return g, true
			}
		}
	}
	return reflect.Value{}, false
}

func yamlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

var durationType = reflect.TypeOf(Duration(0))

func isScalar(v reflect.Value) bool {
	if v.Kind() == reflect.Pointer { // optional scalars (*bool: unset means the default)
		return isScalar(reflect.New(v.Type().Elem()).Elem())
	}
	switch v.Kind() {
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
		return true
	}
	return false
}

// setField parses s into the scalar field f.
func setField(f reflect.Value, s string) error {
	s = strings.TrimSpace(s)
	if f.Kind() == reflect.Pointer {
		v := reflect.New(f.Type().Elem())
		if err := setField(v.Elem(), s); err != nil {
			return err
		}
		f.Set(v)
		return nil
	}
	switch {
	case f.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.SetFloat(x)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// EnvNames lists the environment variables the config reads, with <NAME> standing
// for a model name (for documentation and `hxp config env`).
func EnvNames() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			tag := yamlName(t.Field(i))
			ft := t.Field(i).Type
			if tag == "" {
				if t.Field(i).Anonymous && ft.Kind() == reflect.Struct {
					walk(ft, prefix)
				}
				continue
			}
			name := prefix + strings.ToUpper(tag)
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, name+"_")
			case ft == reflect.TypeOf([]Model{}):
				for _, f := range modelEnvFields() {
					out = append(out, name+"_<NAME>_"+f)
				}
			case ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map:
				// Lists (upstreams, auth.keys, cors origins) come from the YAML only.
			default:
				out = append(out, name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), EnvPrefix)
	return append(out, envKeys, envAdminKey, envNodeKey)
}

func modelEnvFields() []string {
	t := reflect.TypeOf(Model{})
	var out []string
	for i := 0; i < t.NumField(); i++ {
		tag := yamlName(t.Field(i))
		if k := t.Field(i).Type.Kind(); tag == "" || tag == "name" || k == reflect.Map || k == reflect.Slice {
			continue // maps and lists (chat_template_kwargs) come from the YAML only
		}
		if st := t.Field(i).Type; st.Kind() == reflect.Struct && st != durationType { // a section: its scalars
			for j := 0; j < st.NumField(); j++ {
				if sub := yamlName(st.Field(j)); sub != "" {
					out = append(out, strings.ToUpper(tag+"_"+sub))
				}
			}
			continue
		}
		out = append(out, strings.ToUpper(tag))
	}
	return out
}
