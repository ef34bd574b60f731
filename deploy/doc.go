// Package deploy holds no code: its directory carries the Dockerfile, the compose stack, the
// Kubernetes manifests, the NATS configuration, the Grafana dashboard and the Prometheus alert
// rules and scrape configuration, and its tests check that those files agree with each other and
// with the environment variables and metrics of the commands.
package deploy
