package config

import (
	"net/url"
	"strings"
)

// Discovered reports whether the upstream's nodes come from DNS rather than a fixed URL.
func (u Upstream) Discovered() bool { return u.DNS != "" }

// SRV reports whether the upstream's DNS name is looked up as SRV records: its first
// label starts with "_" (_http._tcp.NAME), as SRV names do.
func (u Upstream) SRV() bool { return strings.HasPrefix(u.DNS, "_") }

// NodeURL is the base URL of one node found by DNS at addr (host:port).
func (u Upstream) NodeURL(addr string) string {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + addr
}

// validateUpstream checks one upstream entry (exactly one of url and dns, and the fields
// that go with it); p is its path, e.g. "upstreams[2]".
func validateUpstream(add func(path, format string, args ...any), p string, u Upstream) {
	switch {
	case u.URL != "" && u.DNS != "":
		add(p, "sets both url and dns; keep url for one fixed node or dns for the nodes a name resolves to")
		return
	case u.URL == "" && u.DNS == "":
		add(p, "needs url (one fixed node, http://host:port) or dns (a name such as a headless Service, with port)")
		return
	case u.URL != "":
		if pu, err := url.Parse(u.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil {
			shown := u.URL
			if err == nil && pu.User != nil {
				shown = pu.Redacted() // never echo a password
			}
			add(p+".url", "%q is not http(s)://host:port (without credentials)", shown)
		}
		if u.Port != 0 || u.Scheme != "" {
			add(p, "port and scheme go with dns only; with url, put them in the URL")
		}
		return
	}
	if msg := checkDNSName(u.DNS); msg != "" {
		add(p+".dns", "%q %s", u.DNS, msg)
	}
	switch {
	case u.SRV() && u.Port != 0:
		add(p+".port", "%d is set, but SRV records (%s) carry their own ports; remove port", u.Port, u.DNS)
	case !u.SRV() && (u.Port < 1 || u.Port > 65535):
		add(p+".port", "%d is out of range (the nodes' port, 1..65535; or an SRV name _service._proto.NAME)", u.Port)
	}
	if u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https" {
		add(p+".scheme", "%q is not one of http, https", u.Scheme)
	}
}

// checkDNSName returns "" when name is a DNS name (labels of letters, digits and
// hyphens, SRV labels starting with "_", an optional final dot), or what is wrong.
func checkDNSName(name string) string {
	n := strings.TrimSuffix(name, ".")
	if len(n) > 253 {
		return "is longer than 253 characters"
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "" {
			return "has an empty label (two dots in a row, or a leading dot)"
		}
		if len(l) > 63 {
			return "has a label longer than 63 characters"
		}
		body := l
		if strings.HasPrefix(l, "_") {
			if i > 1 {
				return "has an _underscore label after the first two (SRV names are _service._proto.NAME)"
			}
			body = l[1:]
		}
		for j := 0; j < len(body); j++ {
			c := body[j]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && j > 0 && j < len(body)-1
			if !ok {
				return "is not a DNS name (labels of letters, digits and inner hyphens)"
			}
		}
		if body == "" {
			return "has an empty label after its underscore"
		}
	}
	if strings.HasPrefix(labels[0], "_") && len(labels) < 3 {
		return "is an SRV name without the name to look up (_service._proto.NAME)"
	}
	return ""
}
