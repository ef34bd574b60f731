package schema

import (
	"encoding/json"
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

// BenchmarkScan is the validating scan alone, over the benchmark's ~1.4 KB webhook body.
func BenchmarkScan(b *testing.B) {
	body := []byte(`{"action":"scheduled","subAction":"tikTokPublished","created":"2026-11-30T10:15:00Z","hookId":"HOOKID_SLOT_24_CHARS_XX","code":200,"status":"success","id":"NAOWq7cQf1CsyT7vqTng","refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","title":"Primary Profile","source":"user","url":"https://hooks.example.com/ayrshare","timeStamp":1764497700,"platform":"tiktok","isVideo":true,"post":"Either write something worth reading or do something worth writing. - Benjamin Franklin. Wise men talk because they have something to say; fools, because they have to say something.","mediaUrls":["https://img.ayrshare.com/random/portrait6.mp4"],"platforms":["tiktok","instagram"],"postIds":[{"status":"success","idShare":"v_pub_url~v2.7546563700132497463","id":"7546564355161099533","isVideo":true,"platform":"tiktok","postUrl":"https://www.tiktok.com/@helmar1066/video/7546564355161099533","mediaUrls":["https://img.ayrshare.com/random/portrait6.mp4"]},{"status":"success","id":"18045286352283921","platform":"instagram","postUrl":"https://www.instagram.com/p/C8Fq2bYyW1x/","usedQuota":1}],"errors":[],"scheduleDate":"2026-11-30T10:15:00Z","idShare":"v_pub_url~v2.7546563700132497463","postUrl":"https://www.tiktok.com/@helmar1066/video/7546564355161099533","tweetId":1234567890123456789012,"analytics":{"views":1024,"likes":77,"comments":5,"shares":3,"saves":1,"reach":980,"impressions":1500}}`)
	b.SetBytes(int64(len(body)))
	b.Run("scanObject", func(b *testing.B) {
		for b.Loop() {
			if err := scanObject(body, func([]byte, []byte, bool) {}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
}
