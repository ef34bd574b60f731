// Package publish owns ayrbridge's NATS side: connecting (with the usual auth), the embedded
// nats-server the bridge runs when no NATS_URL is given, the stream that holds every event, and
// publishing that returns only once JetStream has acknowledged the message.
//
// All embedded-server and stream setup lives here so that later topologies (a leaf node with its
// own JetStream domain that a hub stream sources from) change one package.
package publish
