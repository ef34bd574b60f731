// Package schema holds the Ayrshare webhook payload types and the one conversion every
// ayrbridge program shares: a webhook body becomes a CloudEvent with a NATS subject, an
// event id that survives redelivery, and the body itself as data, byte for byte.
//
// Consumers import it to decode what the stream holds: DecodeMsg turns a JetStream message
// into an Event and Payload turns the event's data into a typed struct per action.
//
// # Subjects and types
//
// The subject is ayrshare.<action>.<qualifier> and the CloudEvent type is
// com.ayrshare.<action>.<qualifier>. The qualifier is subAction when it is a non-empty string,
// else type when it is a non-empty string, else the literal "none". In each token every
// character (Unicode code point, or invalid UTF-8 byte) outside A-Z a-z 0-9 _ - becomes "_",
// so a token never carries a NATS wildcard or separator.
//
// # Event ids
//
// The id (ce-id, and Nats-Msg-Id so JetStream drops redeliveries) is the payload's hookId when
// it is a non-empty string. Otherwise it is "sha256:" followed by the first 32 hex digits of a
// SHA-256 over the top-level members of the payload, sorted by key, each written as
// <quoted key>:<compacted value>\n, leaving out the members that change between deliveries of
// the same event (retryAttempt and timeStamp). A redelivery therefore keeps its id while any
// other change to the event gives it a new one.
//
// # Source
//
// ce-source is the URI reference /ayrshare/profiles/<refId> (refId path-escaped), or
// /ayrshare when the payload has no refId.
package schema
