package rest

import (
	"crypto/tls"
	"fmt"
	"net"
)

// LoadTLS returns the TLS settings of a listener serving the certificate chain in
// certFile with the private key in keyFile (PEM): TLS 1.2 or later, HTTP/1.1.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls: load %s and %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

// ServeTLS is Serve with TLS: it serves on ln (or the address bound by Listen when ln
// is nil) with cfg.
func (l *Listener) ServeTLS(ln net.Listener, cfg *tls.Config) {
	if ln == nil {
		ln = l.ln
	}
	l.Serve(tls.NewListener(ln, cfg))
}
