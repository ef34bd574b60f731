package replay

import (
	"testing"

	"github.com/ayrbridge/ayrbridge/schema"
)

func TestPeekAgreesWithNewEvent(t *testing.T) {
	tests := map[string]struct {
		body string
		ok   bool
	}{
		"plain":                 {`{"action":"social","created":"2025-09-05T23:13:08Z","hookId":"6e4zPT9ozQpxD72WX78r"}`, true},
		"spaces":                {"{ \"hookId\" : \"h1\" ,\n \"created\" :\t\"2025-09-05T23:13:08Z\", \"action\":\"social\" }", true},
		"nested keys ignored":   {`{"action":"a","data":{"hookId":"inner","created":"x"},"hookId":"outer","created":"2025-01-01T00:00:00Z","n":[1,{"hookId":"z"}]}`, true},
		"later duplicate wins":  {`{"action":"a","hookId":"first","hookId":"second","created":"2025-01-01T00:00:00Z"}`, true},
		"strings with brackets": {`{"action":"a","post":"}{\"hookId\":\"fake\"","hookId":"real","created":"2025-01-01T00:00:00Z"}`, true},
		"literals":              {`{"action":"a","n":-1.5e3,"t":true,"z":null,"hookId":"h","created":"2025-01-01T00:00:00Z"}`, true},
		"no hookId":             {`{"action":"a","created":"2025-01-01T00:00:00Z"}`, false},
		"empty hookId":          {`{"action":"a","hookId":"","created":"2025-01-01T00:00:00Z"}`, false},
		"number hookId":         {`{"action":"a","hookId":12,"created":"2025-01-01T00:00:00Z"}`, false},
		"string then number":    {`{"action":"a","hookId":"h","hookId":12,"created":"2025-01-01T00:00:00Z"}`, false},
		"object hookId":         {`{"action":"a","hookId":{"id":"h"},"created":"2025-01-01T00:00:00Z"}`, false},
		"escaped hookId value":  {`{"action":"a","hookId":"h\"1","created":"2025-01-01T00:00:00Z"}`, false},
		"escaped key":           {`{"action":"a","hook\u0049d":"h","created":"2025-01-01T00:00:00Z"}`, false},
		"no created":            {`{"action":"a","hookId":"h"}`, false},
		"truncated":             {`{"action":"a","hookId":"h`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id, created, ok := peek([]byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (id %q created %q)", ok, tc.ok, id, created)
			}
			if !ok {
				return
			}
			ev, err := schema.NewEvent([]byte(tc.body), schema.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if string(id) != ev.ID || string(created) != ev.Env.Created {
				t.Fatalf("peek gives id %q created %q; NewEvent gives %q %q", id, created, ev.ID, ev.Env.Created)
			}
		})
	}
}
