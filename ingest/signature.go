package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
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

// keyset is the secrets one profile signs with: more than one while a secret rotates, so
// deliveries signed with the old one are not refused. It is never changed once built.
type keyset struct {
	macs []sync.Pool // one pool of keyed HMACs per secret; keying costs two hash blocks
}

func newKeyset(secrets [][]byte) *keyset {
	ks := &keyset{macs: make([]sync.Pool, len(secrets))}
	for i, secret := range secrets {
		ks.macs[i].New = func() any { return hmac.New(sha256.New, secret) }
	}
	return ks
}

// profileKeys finds the keyset bound to a refId; nil when the profile has none of its own.
type profileKeys interface {
	keys(refID string) *keyset
}

// verifier checks HMAC-SHA256 signatures: a webhook whose profile has its own secrets against
// those only, any other against the default (Primary Profile's) secrets.
type verifier struct {
	defaults *keyset
	profiles profileKeys // nil: every webhook verifies against defaults
	maxSkew  time.Duration
	now      func() time.Time
}

func (v *verifier) enabled() bool {
	return v.profiles != nil || (v.defaults != nil && len(v.defaults.macs) > 0)
}

// maxCandidates bounds the signature entries looked at, so a request cannot make the bridge
// compute an unbounded number of comparisons.
const maxCandidates = 8

// verify returns nil when any signature header entry is the hex HMAC of body under a secret of
// refID's profile and, when a skew is set, the timestamp header is within it.
func (v *verifier) verify(h *fasthttp.RequestHeader, body []byte, refID string) error {
	var cands [maxCandidates][sha256.Size]byte
	n, seen := 0, false
	add := func(s []byte) {
		seen = true
		if n < maxCandidates && decodeHex(&cands[n], s) {
			n++
		}
	}
	for _, s := range h.PeekAll(HeaderSignature) {
		add(s)
	}
	for _, line := range h.PeekAll(HeaderSignatureV2) {
		for len(line) > 0 {
			var entry []byte
			entry, line, _ = bytes.Cut(line, []byte{','})
			if sig, ok := bytes.CutPrefix(bytes.TrimSpace(entry), []byte("v1=")); ok {
				add(sig)
			}
		}
	}
	if !seen {
		return errNoSignature
	}
	ks := v.defaults
	if v.profiles != nil {
		if own := v.profiles.keys(refID); own != nil {
			ks = own
		}
	}
	if ks == nil || ks.match(body, cands[:n]) == 0 {
		return errBadSignature
	}
	if v.maxSkew > 0 {
		ts, err := strconv.ParseInt(string(bytes.TrimSpace(h.Peek(HeaderTimestamp))), 10, 64)
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

// match returns non-zero when one of cands is the HMAC of body under one of the secrets.
func (ks *keyset) match(body []byte, cands [][sha256.Size]byte) int {
	matched := 0
	var sum [sha256.Size]byte
	for i := range ks.macs {
		mac := ks.macs[i].Get().(hash.Hash)
		mac.Reset()
		mac.Write(body)
		want := mac.Sum(sum[:0])
		ks.macs[i].Put(mac)
		// Every comparison runs, so timing does not tell which secret or entry matched.
		for j := range cands {
			matched |= subtle.ConstantTimeCompare(want, cands[j][:])
		}
	}
	return matched
}

func decodeHex(dst *[sha256.Size]byte, s []byte) bool {
	s = bytes.TrimSpace(s)
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.Decode(dst[:], s)
	return err == nil
}
