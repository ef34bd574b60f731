package schema

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPayloadTyped(t *testing.T) {
	tests := map[string]func(t *testing.T, p any){
		"scheduled_tiktok_published.json": func(t *testing.T, p any) {
			s := p.(*Scheduled)
			if s.SubAction != "tikTokPublished" || s.Status != "success" || len(s.PostIDs) == 0 || s.PostIDs[0].Platform == "" {
				t.Errorf("scheduled decoded as %+v", s)
			}
		},
		"social_link.json": func(t *testing.T, p any) {
			s := p.(*Social)
			if s.Type != "link" || s.HookID == "" || s.Platform == "" {
				t.Errorf("social decoded as %+v", s)
			}
		},
		"messages_message_created_instagram.json": func(t *testing.T, p any) {
			m := p.(*Message)
			ts, ok := m.TimeStamp.Time()
			if m.SubAction != "messageCreated" || m.Message == "" || !ok || !ts.Equal(time.Date(2024, 6, 7, 11, 58, 44, 0, time.UTC)) {
				t.Errorf("message decoded as %+v (timeStamp %v %v)", m, ts, ok)
			}
		},
		"batch.json": func(t *testing.T, p any) {
			if b := p.(*Batch); b.URL == "" || b.Action != "batch" {
				t.Errorf("batch decoded as %+v", b)
			}
		},
		"feed.json": func(t *testing.T, p any) {
			if f := p.(*Feed); f.Action != "feed" {
				t.Errorf("feed decoded as %+v", f)
			}
		},
		"account_activity_tweet_create_events.json": func(t *testing.T, p any) {
			a := p.(*AccountActivity)
			if len(a.TweetCreateEvents) == 0 {
				t.Fatalf("accountActivity lost tweetCreateEvents: %+v", a)
			}
			// Ids beyond 2^53 keep every digit when decoded with UseNumber.
			dec := json.NewDecoder(bytes.NewReader(a.TweetCreateEvents))
			dec.UseNumber()
			var ev struct{ ID json.Number }
			if err := dec.Decode(&ev); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(readFixture(t, "account_activity_tweet_create_events.json"), []byte(ev.ID.String())) || len(ev.ID) < 17 {
				t.Errorf("tweet id %s is not the one in the fixture", ev.ID)
			}
		},
	}
	for name, check := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Payload(readFixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			check(t, p)
		})
	}
}

func TestPayloadUnknownActionKeepsEverything(t *testing.T) {
	body := []byte(`{"action":"comments","subAction":"commentCreated","id":123456789012345678901,"new":{"x":[1,2]}}`)
	p, err := Payload(body)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := p.(*Unknown)
	if !ok || u.Action != "comments" || !bytes.Equal(u.Raw, body) {
		t.Fatalf("Payload = %#v, want *Unknown with the raw body", p)
	}
}

func TestBigIntegersSurvive(t *testing.T) {
	// The bridge never decodes the body into float64: the stored data is the body itself.
	body := []byte(`{"action":"accountActivity","tweetCreateEvents":{"id":1234567890123456789012,"id_str":"1234567890123456789012"}}`)
	ev, err := NewEvent(body, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ev.Data, []byte(`"id":1234567890123456789012`)) {
		t.Fatal("the big integer was rewritten")
	}
}

func TestTimeStamp(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want time.Time
		ok   bool
	}{
		"seconds":        {`1757166928`, time.Unix(1757166928, 0), true},
		"digits string":  {`"1757166928"`, time.Unix(1757166928, 0), true},
		"rfc3339 string": {`"2024-06-07T11:58:44Z"`, time.Date(2024, 6, 7, 11, 58, 44, 0, time.UTC), true},
		"fraction":       {`1757166928.5`, time.UnixMilli(1757166928500), true},
		"garbage string": {`"soon"`, time.Time{}, false},
		"null":           {`null`, time.Time{}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var c struct {
				TS TimeStamp `json:"timeStamp"`
			}
			if err := json.Unmarshal([]byte(`{"timeStamp":`+tt.raw+`}`), &c); err != nil {
				t.Fatal(err)
			}
			got, ok := c.TS.Time()
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("Time() = %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
			out, _ := json.Marshal(c)
			if tt.raw != "null" && !strings.Contains(string(out), tt.raw) {
				t.Errorf("re-encoded %s, want the raw %s", out, tt.raw)
			}
		})
	}
	var c struct {
		TS TimeStamp `json:"timeStamp"`
	}
	for _, bad := range []string{`{}`, `[]`, `true`} {
		if err := json.Unmarshal([]byte(`{"timeStamp":`+bad+`}`), &c); err == nil {
			t.Errorf("timeStamp %s accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"social_link.json", "feed.json", "account_activity_favorite_events.json", "messages_message_created_instagram.json"} {
		f.Add(readFixture(f, name))
	}
	for _, s := range []string{`{"action":"a"}`, `{"action":"a","action":1}`, `[]`, `{"action":"\ud800"}`, `{"a":{"b":[{"c":"\"}"}]},"action":"x"}`, "{\"action\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := NewEvent(body, Meta{})
		valid := json.Valid(body)
		if err != nil {
			return
		}
		if !valid {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			t.Fatalf("accepted a non-object %q: %v", body, err)
		}
		var action string
		if err := json.Unmarshal(obj["action"], &action); err != nil || action == "" {
			t.Fatalf("accepted %q without a string action", body)
		}
		if ev.Env.Action != action {
			t.Fatalf("action %q, encoding/json says %q", ev.Env.Action, action)
		}
		tokens := strings.Split(ev.Subject, ".")
		if len(tokens) != 3 || tokens[0] != SubjectPrefix {
			t.Fatalf("subject %q is not three tokens", ev.Subject)
		}
		for _, tok := range tokens {
			if tok == "" || Token(tok) != tok {
				t.Fatalf("subject %q has an unsafe token %q", ev.Subject, tok)
			}
		}
		if ev.ID == "" || !bytes.Equal(ev.Data, body) {
			t.Fatalf("empty id or data changed")
		}
		// Every attribute travels as a NATS header: none may carry a line break or NUL.
		attrs := []string{ev.ID, ev.Source, ev.Type}
		for _, x := range ev.Extensions() {
			attrs = append(attrs, x.Value)
		}
		for _, v := range attrs {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("attribute carries a control character: %q", v)
			}
		}
		again, err := NewEvent(body, Meta{})
		if err != nil || again.ID != ev.ID {
			t.Fatalf("id not deterministic: %q vs %q (%v)", ev.ID, again.ID, err)
		}
	})
}
