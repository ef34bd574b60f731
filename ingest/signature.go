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

// verifier checks HMAC-SHA256 signatures against every configured secret, so operators can
// rotate secrets without refusing deliveries signed with the old one.
type verifier struct {
	macs    []sync.Pool // one pool of keyed HMACs per secret; keying costs two hash blocks
	maxSkew time.Duration
	now     func() time.Time
}

func (v *verifier) addSecret(secret []byte) {
	v.macs = append(v.macs, sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }})
}

func (v *verifier) enabled() bool { return len(v.macs) > 0 }

// maxCandidates bounds the signature entries looked at, so a request cannot make the bridge
// compute an unbounded number of comparisons.
const maxCandidates = 8

// verify returns nil when any signature header entry is the hex HMAC of body under any secret
// and, when a skew is set, the timestamp header is within it.
func (v *verifier) verify(h *fasthttp.RequestHeader, body []byte) error {
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
	matched := 0
	var sum [sha256.Size]byte
	for i := range v.macs {
		mac := v.macs[i].Get().(hash.Hash)
		mac.Reset()
		mac.Write(body)
		want := mac.Sum(sum[:0])
		v.macs[i].Put(mac)
		// Every comparison runs, so timing does not tell which secret or entry matched.
		for j := range n {
			matched |= subtle.ConstantTimeCompare(want, cands[j][:])
		}
	}
	if matched == 0 {
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

func decodeHex(dst *[sha256.Size]byte, s []byte) bool {
	s = bytes.TrimSpace(s)
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.Decode(dst[:], s)
	return err == nil
}
