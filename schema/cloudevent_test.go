package schema

import (
	"bytes"
	"testing"
)

func TestDecodeMsgRoundTrip(t *testing.T) {
	body := readFixture(t, "messages_message_created.json")
	ev, err := NewEvent(body, Meta{DeliveryID: "d9", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	if err != nil {
		t.Fatal(err)
	}
	ce, err := DecodeMsg(t.Context(), ev.Msg())
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("decoded event is not valid: %v", err)
	}
	want := ev.CloudEvent()
	if ce.ID() != want.ID() || ce.Type() != want.Type() || ce.Source() != want.Source() ||
		!ce.Time().Equal(want.Time()) || ce.DataContentType() != ContentType || ce.DataSchema() != want.DataSchema() {
		t.Errorf("decoded %v\nwant %v", ce, want)
	}
	if !bytes.Equal(ce.Data(), body) {
		t.Error("decoded data differs from the body")
	}
	for name, v := range map[string]string{"deliveryid": "d9", "refid": ev.Env.RefID, "traceparent": ev.Meta.TraceParent} {
		if got, _ := ce.Extensions()[name].(string); got != v {
			t.Errorf("extension %s = %v, want %q", name, ce.Extensions()[name], v)
		}
	}
}
