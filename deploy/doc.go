// Package deploy holds HXP's deployment files: the Prometheus scrape configuration, alert
// rules and their unit tests (prometheus/), the Grafana dashboard (grafana/), the
// Alertmanager routing example (alertmanager/), the systemd unit (systemd/), the one-host
// compose stack (compose/) and the Helm chart (helm/, tested there). It has no Go code;
// its tests check the files with promtool, amtool, systemd-analyze and the Compose
// specification's loader, and check that every metric they name is one HXP exports.
package deploy
