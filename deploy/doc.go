// Package deploy holds no code: its directory carries the Dockerfile, the compose stack, the
// Kubernetes manifests, the NATS configuration and the Grafana dashboard, and its tests check that
// those files agree with each other and with the environment variables the commands read.
package deploy
