// Package publish owns ayrbridge's NATS side: connecting (with the usual auth), the embedded
// nats-server the bridge runs when no NATS_URL is given, the stream that holds every event, and
// the one Publisher that stores events and reports success only once JetStream acknowledged
// them. Publish serves the bridge (one event, its own ack, concurrent calls sharing trips to
// JetStream through a group commit); PublishAsync serves the replay (a bounded window of acks
// in flight). The CloudEvents-on-NATS encoding itself is in the cenats subpackage, which
// consumers import without the server.
//
// All embedded-server and stream setup lives here so that later topologies (a leaf node with its
// own JetStream domain that a hub stream sources from) change one package.
package publish
