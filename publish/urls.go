package publish

import "strings"

// WithDefaultURL returns cfg with the blank server URLs a trailing or doubled comma in NATS_URL
// leaves dropped, and url as the only server when none is left (url may be empty).
func (cfg ConnConfig) WithDefaultURL(url string) ConnConfig {
	var urls []string
	for _, u := range cfg.URLs {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 && url != "" {
		urls = []string{url}
	}
	cfg.URLs = urls
	return cfg
}
