package publish_test

import (
	"fmt"
	"testing"

	"github.com/ayrbridge/ayrbridge/publish"
)

func TestWithDefaultURL(t *testing.T) {
	tests := map[string]struct {
		urls []string
		def  string
		want []string
	}{
		"none, default":          {nil, "nats://127.0.0.1:4222", []string{"nats://127.0.0.1:4222"}},
		"none, no default":       {nil, "", nil},
		"blanks only":            {[]string{"", " "}, "nats://d:4222", []string{"nats://d:4222"}},
		"given wins, trimmed":    {[]string{" nats://a:4222", "", "nats://b:4222 "}, "nats://d:4222", []string{"nats://a:4222", "nats://b:4222"}},
		"given, no default used": {[]string{"tls://a:4222"}, "", []string{"tls://a:4222"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := publish.ConnConfig{URLs: tc.urls, Token: "secret"}.WithDefaultURL(tc.def)
			if fmt.Sprint(got.URLs) != fmt.Sprint(tc.want) || got.Token != "secret" {
				t.Fatalf("got %q (token %q), want %q", got.URLs, got.Token, tc.want)
			}
		})
	}
}
