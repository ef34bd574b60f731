package schema

import (
	"testing"
	"time"
)

// The hot path of every webhook: parse and validate, subject, id, CloudEvent headers.
// Run with: go test ./schema -bench . -benchmem

func BenchmarkNewEvent(b *testing.B) {
	body := readFixture(b, "scheduled_tiktok_published.json")
	body = append(body[:len(body)-2], []byte(`,"hookId":"AxGbVck3Y7hsOdbAqVp7"}`)...)
	meta := Meta{ReceivedAt: time.Now(), DeliveryID: "d1"}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent(body, meta); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewEventDerivedID(b *testing.B) {
	body := readFixture(b, "account_activity_user_event_revoke.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent(body, Meta{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMsg(b *testing.B) {
	ev, err := NewEvent(readFixture(b, "social_link.json"), Meta{DeliveryID: "d1", DeliveryAttempt: "1"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = ev.Msg()
	}
}
