package envconfig

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	URLs []string `env:"T_URLS" envSeparator:","`
}

type cfg struct {
	Timeout time.Duration `env:"T_TIMEOUT" envDefault:"1s"`
	Flag    bool          `env:"T_FLAG"`
	Nested  inner
}

func TestLoad(t *testing.T) {
	var c cfg
	if err := Load(&c, map[string]string{"T_URLS": " a ,, b,", "T_FLAG": "true"}); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != time.Second || !c.Flag || strings.Join(c.Nested.URLs, "|") != "a|b" {
		t.Fatalf("loaded %+v", c)
	}
}

func TestLoadNamesTheVariable(t *testing.T) {
	tests := map[string]map[string]string{
		"T_TIMEOUT": {"T_TIMEOUT": "soon"},
		"T_FLAG":    {"T_FLAG": "maybe"},
	}
	for want, environ := range tests {
		var c cfg
		err := Load(&c, environ)
		if err == nil || !strings.HasPrefix(err.Error(), want+": ") {
			t.Errorf("Load(%v) = %v, want an error starting with %s", environ, err, want)
		}
	}
}
