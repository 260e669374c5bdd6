// Package helm holds HXP's Helm chart (hxp/) and no Go code: chart_test.go renders the
// chart with Helm's Go packages for the default and the enterprise values, lints it,
// decodes every object strictly into the Kubernetes (and Prometheus Operator) API types
// and checks probes, drain timing, GPU requests, secrets and the shared monitoring files.
package helm
