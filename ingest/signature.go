package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signature headers Ayrshare sends when a webhook was registered with a secret.
const (
	HeaderSignature   = "X-Authorization-Content-SHA256"
	HeaderSignatureV2 = "X-Authorization-Content-SHA256-V2"
	HeaderTimestamp   = "X-Authorization-Timestamp"
)

var (
	errNoSignature  = errors.New("missing signature")
	errBadSignature = errors.New("signature does not match")
	errStale        = errors.New("signature timestamp missing or outside the allowed skew")
)

// verifier checks HMAC-SHA256 signatures against every configured secret, so operators can
// rotate secrets without refusing deliveries signed with the old one.
type verifier struct {
	secrets [][]byte
	maxSkew time.Duration // 0 leaves X-Authorization-Timestamp unchecked
	now     func() time.Time
}

func (v *verifier) enabled() bool { return len(v.secrets) > 0 }

// verify returns nil when any signature header entry is the hex HMAC of body under any secret.
func (v *verifier) verify(h http.Header, body []byte) error {
	var candidates [][]byte
	for _, s := range h.Values(HeaderSignature) {
		if sig, ok := decodeHex(s); ok {
			candidates = append(candidates, sig)
		}
	}
	for _, line := range h.Values(HeaderSignatureV2) {
		for entry := range strings.SplitSeq(line, ",") {
			sig, found := strings.CutPrefix(strings.TrimSpace(entry), "v1=")
			if !found {
				continue
			}
			if b, ok := decodeHex(sig); ok {
				candidates = append(candidates, b)
			}
		}
	}
	if len(candidates) == 0 {
		if h.Get(HeaderSignature) == "" && h.Get(HeaderSignatureV2) == "" {
			return errNoSignature
		}
		return errBadSignature
	}
	matched := false
	for _, secret := range v.secrets {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := mac.Sum(nil)
		for _, c := range candidates {
			// Every comparison runs, so timing does not tell which secret or entry matched.
			if hmac.Equal(want, c) {
				matched = true
			}
		}
	}
	if !matched {
		return errBadSignature
	}
	if v.maxSkew > 0 {
		ts, err := strconv.ParseInt(strings.TrimSpace(h.Get(HeaderTimestamp)), 10, 64)
		if err != nil {
			return errStale
		}
		skew := v.now().Sub(time.Unix(ts, 0))
		if skew > v.maxSkew || skew < -v.maxSkew {
			return errStale
		}
	}
	return nil
}

func decodeHex(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if len(s) != 2*sha256.Size {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}
