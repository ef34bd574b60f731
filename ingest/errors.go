package ingest

import (
	"errors"
	"fmt"
	"net"

	"github.com/valyala/fasthttp"
)

// Refusals the handler makes before a webhook reaches the store.
var (
	errMethod      = errors.New("method not allowed: use POST")
	errContentType = errors.New("content type must be application/json")
	errTooLarge    = errors.New("body too large")
	errHeader      = errors.New("request headers too large")
	errTimeout     = errors.New("request not received in time")
	errBadRequest  = errors.New("malformed HTTP request")
	errPayload     = errors.New("invalid webhook payload")
	errUnavailable = errors.New("event store unavailable, retry later")
	errNotFound    = errors.New("no such endpoint")
	errInternal    = errors.New("internal error")
)

// statusOf maps every error the HTTP side can meet to the status it answers with. It is the
// one place where that mapping lives: Ayrshare retries 408, 429 and 5xx, never other 4xx, so
// only a request that can never succeed may get a 4xx.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errPayload), errors.Is(err, errBadRequest):
		return fasthttp.StatusBadRequest
	case errors.Is(err, errNoSignature), errors.Is(err, errBadSignature), errors.Is(err, errStale):
		return fasthttp.StatusUnauthorized
	case errors.Is(err, errNotFound):
		return fasthttp.StatusNotFound
	case errors.Is(err, errMethod):
		return fasthttp.StatusMethodNotAllowed
	case errors.Is(err, errTimeout):
		return fasthttp.StatusRequestTimeout
	case errors.Is(err, errTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	case errors.Is(err, errContentType):
		return fasthttp.StatusUnsupportedMediaType
	case errors.Is(err, errHeader):
		return fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errUnavailable):
		return fasthttp.StatusServiceUnavailable
	default:
		return fasthttp.StatusInternalServerError
	}
}

// serverError turns what fasthttp reports while reading a request (before any handler runs)
// into one of our errors, so those refusals get the same JSON answers as the handler's.
func serverError(err error) error {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		return errHeader
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return errTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		return errTimeout
	default:
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
}

// writeError answers with err's status and a JSON body {"error": msg}. msg is what the client
// may see: never a secret, a signature or the body.
func writeError(rc *fasthttp.RequestCtx, err error, msg string) int {
	status := statusOf(err)
	b := append(rc.Response.Body()[:0], `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, "}\n"...)
	writeJSON(rc, status, b)
	return status
}

func writeJSON(rc *fasthttp.RequestCtx, status int, body []byte) {
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.Response.Header.Set("X-Content-Type-Options", "nosniff")
	rc.SetBody(body)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 is kept as is: every string the
// bridge writes comes from a payload that passed json.Valid, or from its own messages.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
