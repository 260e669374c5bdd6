// Package deploy holds HXP's deployment files: the Prometheus scrape configuration, alert
// rules and their unit tests (prometheus/), the Grafana dashboard (grafana/) and the
// systemd unit (systemd/). It has no Go code; deploy_test.go checks the files with
// promtool and systemd-analyze and checks that every metric they name is one HXP exports.
package deploy
