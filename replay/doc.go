// Package replay closes the gaps a stream has against Ayrshare's webhook history: after an
// outage it reads GET /api/hook/history, learns which event ids the stream already holds, and
// publishes exactly the missing events, each converted by schema.NewEvent as the bridge would
// have converted the delivery, and marked with the ce-replayed extension.
//
// # Exactly once
//
// Every message carries Nats-Msg-Id, but the stream's duplicate window (24h by default) is
// shorter than the history (six months), so the id alone cannot keep a replayed event from
// being stored twice. Before publishing, Run therefore reads the ids of what the stream stored
// from the start of the window on (headers only) and skips those events. An event is stored at
// or after the time Ayrshare created it, so reading from the window's start covers every stored
// copy of an event created in the window. Two runs in a row: the second publishes nothing.
//
// # Memory
//
// The history response is decoded as a stream (Decoder), so memory grows with the number of
// ids in the window and the publish window, not with the size of the response. An id is kept
// as a 16-byte hash pair in a table between 3/8 and 3/4 full, so it costs 21 to 43 bytes: about
// 34 for a million ids (a table of 2^21 slots, 32 MiB). Payload bytes are kept exactly as
// received: numbers beyond 2^53 keep every digit.
package replay
