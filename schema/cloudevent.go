package schema

import (
	"context"
	"fmt"

	natsce "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// CloudEvent returns e as an sdk-go event, for code that works with the CloudEvents SDK.
func (e Event) CloudEvent() event.Event {
	ce := event.New(event.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetSource(e.Source)
	ce.SetType(e.Type)
	ce.SetTime(e.Time)
	ce.SetDataContentType(ContentType)
	if ds := DataSchema(e.Env.Action); ds != "" {
		ce.SetDataSchema(ds)
	}
	ce.DataEncoded = e.Data
	for k, v := range e.Header() {
		if name, ok := extensionName(k); ok {
			ce.SetExtension(name, v[0])
		}
	}
	return ce
}

// extensionName reports the CloudEvents extension a header carries, if it carries one.
func extensionName(header string) (string, bool) {
	switch header {
	case HeaderRefID, HeaderPlatform, HeaderDeliveryID, HeaderDeliveryAttempt, HeaderReplayed,
		HeaderTraceParent, HeaderTraceState:
		return header[len("ce-"):], true
	}
	return "", false
}

// DecodeMsg reads a message the bridge stored back into a CloudEvent, through sdk-go's NATS
// binding, so consumers get the same event whichever library they use.
func DecodeMsg(ctx context.Context, msg *nats.Msg) (*event.Event, error) {
	m := natsce.NewMessage(msg)
	if m.ReadEncoding() != binding.EncodingBinary {
		return nil, fmt.Errorf("decode %s: not a binary-mode CloudEvent", msg.Subject)
	}
	ev, err := binding.ToEvent(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", msg.Subject, err)
	}
	return ev, nil
}
