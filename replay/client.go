package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
)

// HistoryPath is where the webhook history lives under the API URL.
const HistoryPath = "/api/hook/history"

// Errors returned (wrapped) by Client.History; the message always names the profile.
var (
	// ErrUnauthorized means Ayrshare answered 401 or 403: the API key or profile key is wrong,
	// or the profile is suspended. It is never retried.
	ErrUnauthorized = errors.New("ayrshare refused the credentials")
	// ErrRejected means Ayrshare refused the request with another 4xx; retrying cannot help.
	ErrRejected = errors.New("ayrshare refused the history request")
	// ErrRetriesExhausted means every attempt failed with a retryable error (429, 5xx, network).
	ErrRetriesExhausted = errors.New("ayrshare history still failing after all retries")
)

// maxRetryAfter is the longest Retry-After or rate-limit reset the client waits for; Ayrshare's
// rate-limit window is five minutes, so a longer wait means something else is wrong.
const maxRetryAfter = 10 * time.Minute

// Profile is one Ayrshare profile whose history is replayed.
type Profile struct {
	Key   string // the Profile-Key header; empty for the primary profile. Secret: never logged.
	Label string // how logs and errors name the profile, without its key
}

// Profiles returns the profiles for keys, labelled by position and a redacted key; no keys
// means the primary profile alone.
func Profiles(keys []string) []Profile {
	if len(keys) == 0 {
		return []Profile{{Label: "primary profile"}}
	}
	out := make([]Profile, len(keys))
	for i, k := range keys {
		out[i] = Profile{Key: k, Label: fmt.Sprintf("profile %d (%s)", i+1, Redact(k))}
	}
	return out
}

// Redact returns a form of a secret that tells keys apart in a log without revealing them:
// its first four characters for a long key, nothing for a short one.
func Redact(secret string) string {
	if len(secret) < 16 {
		return "…"
	}
	return secret[:4] + "…"
}

// Client reads Ayrshare's webhook history. It is safe for concurrent use.
type Client struct {
	hc         *http.Client
	url        string
	apiKey     string
	timeout    time.Duration
	retries    int
	backoff    time.Duration
	maxBackoff time.Duration
	log        zerolog.Logger
	limits     *limits
	metrics    *Metrics
}

// ClientOption configures a Client.
type ClientOption func(*Client) error

// WithHTTPClient sets the HTTP client (default: a new one with no overall timeout, since a
// history response may take minutes to stream).
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("replay: nil http client")
		}
		c.hc = hc
		return nil
	}
}

// WithRequestTimeout bounds the wait for the response headers and any pause while reading the
// body (default 60s); an attempt that runs out of it is retried like a network error.
func WithRequestTimeout(d time.Duration) ClientOption {
	return func(c *Client) error { c.timeout = d; return invalid(d > 0, "request timeout %s must be positive", d) }
}

// WithRetries sets how many times a failed request is retried (default 6). Each 429 counts
// against the profile's budget (1,000 in 24h suspend it), so the cap is hard.
func WithRetries(n int) ClientOption {
	return func(c *Client) error { c.retries = n; return invalid(n >= 0, "retries %d must not be negative", n) }
}

// WithBackoff sets the first retry delay and the cap of the doubling delays (default 1s and
// 1m). Each delay is drawn between half and all of its value, so clients do not retry in step.
func WithBackoff(initial, maxDelay time.Duration) ClientOption {
	return func(c *Client) error {
		c.backoff, c.maxBackoff = initial, maxDelay
		return invalid(initial > 0 && maxDelay >= initial, "backoff %s..%s: want 0 < initial <= max", initial, maxDelay)
	}
}

// WithRateLimit allows at most n requests for one profile in any span of per (default
// DefaultRateLimit in DefaultRatePeriod, Ayrshare's limit), retries included; a request over it waits.
func WithRateLimit(n int, per time.Duration) ClientOption {
	return func(c *Client) error {
		c.limits.n, c.limits.per = n, per
		return invalid(n > 0 && per > 0, "rate limit %d per %s: want both positive", n, per)
	}
}

// With429Guard sets how many 429 answers for one profile in 24 hours make the client stop
// requesting its history with ErrRateBudget (default Default429Guard).
func With429Guard(n int) ClientOption {
	return func(c *Client) error { c.limits.guard = n; return invalid(n > 0, "429 guard %d must be positive", n) }
}

// WithClientMetrics counts the requests in m (default: none).
func WithClientMetrics(m *Metrics) ClientOption {
	return func(c *Client) error { c.metrics = m; return nil }
}

// WithClientLogger sets the logger (default: none).
func WithClientLogger(l zerolog.Logger) ClientOption {
	return func(c *Client) error { c.log = l; return nil }
}

// NewClient returns a Client for the API at baseURL (such as https://api.ayrshare.com)
// authenticating with apiKey.
func NewClient(baseURL, apiKey string, opts ...ClientOption) (*Client, error) {
	if apiKey == "" {
		return nil, errors.New("replay: empty API key")
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("replay: API URL %q: want http(s)://host", baseURL)
	}
	c := &Client{
		hc:         &http.Client{},
		url:        strings.TrimRight(baseURL, "/") + HistoryPath,
		apiKey:     apiKey,
		timeout:    60 * time.Second,
		retries:    6,
		backoff:    time.Second,
		maxBackoff: time.Minute,
		log:        zerolog.Nop(),
		limits:     newLimits(DefaultRateLimit, DefaultRatePeriod, Default429Guard),
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// History requests the history of profile p, of one action or of all when action is empty,
// and returns the response body for a Decoder; the caller closes it. It retries 429, 5xx,
// timeouts and network errors with jittered exponential backoff, waiting as long as a
// Retry-After or an exhausted x-ratelimit-* header asks, and gives up after the configured
// retries with ErrRetriesExhausted. 401 and 403 stop at once with ErrUnauthorized, any other
// 4xx with ErrRejected. Every attempt first waits for the profile's rate limit; a profile
// that had too many 429s of late gets ErrRateBudget without a request. Errors name the
// profile by its label.
func (c *Client) History(ctx context.Context, p Profile, action string) (io.ReadCloser, error) {
	tries := 0
	var last error // the last attempt's failure: a RetryAfter error does not carry it
	op := func() (io.ReadCloser, error) {
		if err := c.limits.wait(ctx, p.Key); err != nil {
			if errors.Is(err, ErrRateBudget) {
				return nil, backoff.Permanent(fmt.Errorf("history of %s: %w", p.Label, err))
			}
			return nil, backoff.Permanent(err)
		}
		tries++
		body, res, err := c.attempt(ctx, p, action)
		if err != nil {
			last = err
			return nil, c.retryable(p, res, err)
		}
		return body, nil
	}
	body, err := backoff.Retry(ctx, op,
		backoff.WithBackOff(c.newBackOff()),
		backoff.WithMaxTries(uint(c.retries)+1),
		// The number of tries bounds the run; the library's default 15-minute budget would
		// instead give up before a Retry-After of minutes that the server asked for.
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(_ error, wait time.Duration) {
			c.log.Warn().Err(last).Str("profile", p.Label).Str("action", action).Int("attempt", tries).
				Dur("retry_in", wait).Msg("history request failed, retrying")
		}),
	)
	if err == nil {
		return body, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("history of %s: %w", p.Label, ctx.Err())
	}
	// On the last try Retry returns a permanent error still wrapped.
	var permanent *backoff.PermanentError
	if errors.As(err, &permanent) {
		err = permanent.Err
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrRejected) || errors.Is(err, ErrRateBudget) {
		return nil, err
	}
	if last == nil { // no attempt was made: the rate limit's wait would outlast the deadline
		return nil, fmt.Errorf("history of %s: rate limit: %w", p.Label, err)
	}
	return nil, fmt.Errorf("%w: history of %s: %d attempts, last: %w", ErrRetriesExhausted, p.Label, tries, last)
}

// newBackOff returns the schedule of one History call (an ExponentialBackOff keeps state, so
// calls cannot share one): the delays double from the initial one up to the cap, each drawn
// between half and all of its value. ExponentialBackOff draws within ±RandomizationFactor of
// its interval, so the interval is 3/4 of the delay and the factor 1/3.
func (c *Client) newBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     c.backoff * 3 / 4,
		RandomizationFactor: 1.0 / 3,
		Multiplier:          2,
		MaxInterval:         c.maxBackoff * 3 / 4,
	}
}

// retryable returns the error that tells Retry what to do after a failed attempt: stop for
// what cannot heal, wait what the server asked for, else back off. res is the failed response,
// nil when there was none.
func (c *Client) retryable(p Profile, res *http.Response, err error) error {
	if res == nil {
		return err
	}
	switch code := res.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return backoff.Permanent(fmt.Errorf("%w: history of %s: %w", ErrUnauthorized, p.Label, err))
	case code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout:
		return backoff.Permanent(fmt.Errorf("%w: history of %s: %w", ErrRejected, p.Label, err))
	}
	if d, ok := serverDelay(res.Header, time.Now()); ok {
		return retryAfter(d)
	}
	if res.StatusCode == http.StatusTooManyRequests && limitSpent(res.Header) {
		// Short retries would only spend more of the profile's 429 budget.
		return retryAfter(c.maxBackoff)
	}
	return err
}

// retryAfter makes Retry wait d instead of its next backoff. It builds what backoff.RetryAfter
// does, without rounding d to whole seconds: an HTTP-date wait or a backoff cap below a second
// must not turn into no wait.
func retryAfter(d time.Duration) error {
	return &backoff.RetryAfterError{Duration: d}
}

// errStalled ends an attempt whose server stopped answering.
var errStalled = errors.New("no data from ayrshare")

// attempt makes one request. On failure it returns the response (status and headers only,
// body closed) when there was one.
func (c *Client) attempt(ctx context.Context, p Profile, action string) (io.ReadCloser, *http.Response, error) {
	u := c.url
	if action != "" {
		u += "?action=" + url.QueryEscape(action)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	stall := fmt.Errorf("%w for %s", errStalled, c.timeout)
	timer := time.AfterFunc(c.timeout, func() { cancel(stall) })
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		timer.Stop()
		cancel(nil)
		return nil, nil, fmt.Errorf("history request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	if p.Key != "" {
		req.Header.Set("Profile-Key", p.Key)
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		timer.Stop()
		cancel(nil)
		if ctx.Err() == nil { // the caller's stop is no failed request
			c.metrics.request(0)
		}
		if cause := context.Cause(rctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return nil, nil, fmt.Errorf("history request: %w", err)
	}
	c.metrics.request(res.StatusCode)
	if res.StatusCode == http.StatusTooManyRequests {
		c.limits.saw429(p.Key)
	}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return &body{rc: res.Body, ctx: rctx, cancel: cancel, timer: timer, idle: c.timeout}, nil, nil
	}
	timer.Stop()
	msg := describe(res.Body)
	res.Body.Close()
	cancel(nil)
	return nil, res, fmt.Errorf("HTTP %d %s: %s", res.StatusCode, http.StatusText(res.StatusCode), msg)
}

// serverDelay reads Retry-After (seconds or an HTTP date), else x-ratelimit-reset (seconds to
// wait, or a Unix time), capped at maxRetryAfter.
func serverDelay(h http.Header, now time.Time) (time.Duration, bool) {
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			d = time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = max(t.Sub(now), 0)
		} else {
			return 0, false
		}
	} else if v := strings.TrimSpace(h.Get("X-Ratelimit-Reset")); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil || s < 0 {
			return 0, false
		}
		if s > 1e9 { // a Unix time, not a number of seconds
			d = max(time.Unix(s, 0).Sub(now), 0)
		} else {
			d = time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
		}
	} else {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

// limitSpent reports whether Ayrshare's x-ratelimit-* headers say no request is left.
func limitSpent(h http.Header) bool {
	if v := h.Get("X-Ratelimit-Remaining"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return err == nil && n <= 0
	}
	maxN, err1 := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Max")))
	count, err2 := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Count")))
	return err1 == nil && err2 == nil && count >= maxN
}

// describe returns Ayrshare's error message from an error body, or the start of the body.
func describe(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		b = []byte(e.Message)
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

// body is a response body that fails once no byte arrived for idle, and releases the request
// when closed.
type body struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, errStalled) {
			err = cause
		}
	}
	return n, err
}

func (b *body) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// invalid returns the error of an option whose value is out of range (ok false), else nil;
// the constructor fails on it.
func invalid(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("replay: "+format, args...)
}
