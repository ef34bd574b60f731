package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Actions documented by Ayrshare; others are valid too and decode to *Unknown.
const (
	ActionScheduled       = "scheduled"
	ActionSocial          = "social"
	ActionMessages        = "messages"
	ActionBatch           = "batch"
	ActionFeed            = "feed"
	ActionAccountActivity = "accountActivity"
)

// Common holds the fields every Ayrshare webhook may carry.
type Common struct {
	Action       string    `json:"action"`
	SubAction    string    `json:"subAction,omitempty"`
	Type         string    `json:"type,omitempty"`
	Created      string    `json:"created,omitempty"`
	Code         int       `json:"code,omitempty"`
	HookID       string    `json:"hookId,omitempty"`
	RefID        string    `json:"refId,omitempty"`
	Title        string    `json:"title,omitempty"`
	URL          string    `json:"url,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	Source       string    `json:"source,omitempty"`
	ScheduleDate string    `json:"scheduleDate,omitempty"`
	RetryAttempt int       `json:"retryAttempt,omitempty"`
	TimeStamp    TimeStamp `json:"timeStamp,omitzero"`
}

// Scheduled reports a scheduled post that was sent (subAction tikTokPublished once TikTok is done).
type Scheduled struct {
	Common
	Status  string            `json:"status,omitempty"`
	ID      string            `json:"id,omitempty"`
	Errors  []json.RawMessage `json:"errors,omitempty"`
	PostIDs []PostID          `json:"postIds,omitempty"`
}

// PostID is one platform's result for a scheduled post.
type PostID struct {
	Status   string `json:"status,omitempty"`
	ID       string `json:"id,omitempty"`
	PostURL  string `json:"postUrl,omitempty"`
	Platform string `json:"platform,omitempty"`
}

// Social reports a social account linked, unlinked or due for refresh (type link/unlink/refresh).
type Social struct {
	Common
	DisplayName string          `json:"displayName,omitempty"`
	RefreshBy   string          `json:"refreshBy,omitempty"`
	Details     json.RawMessage `json:"details,omitempty"`
}

// Message reports a direct message created, read, edited or reacted to.
type Message struct {
	Common
	ConversationID   string      `json:"conversationId,omitempty"`
	ID               string      `json:"id,omitempty"`
	Message          string      `json:"message,omitempty"`
	MediaURLs        []string    `json:"mediaUrls,omitempty"`
	RecipientID      string      `json:"recipientId,omitempty"`
	SenderID         string      `json:"senderId,omitempty"`
	SenderDetails    *Person     `json:"senderDetails,omitempty"`
	RecipientDetails *Person     `json:"recipientDetails,omitempty"`
	ReaderDetails    *Person     `json:"readerDetails,omitempty"`
	Reaction         string      `json:"reaction,omitempty"`
	Read             json.Number `json:"read,omitempty"`
}

// Person is a sender, recipient or reader of a direct message.
type Person struct {
	ID       string `json:"id,omitempty"`
	Name     string `json:"name,omitempty"`
	Username string `json:"username,omitempty"`
	Picture  string `json:"picture,omitempty"`
}

// Batch reports a batch file ready for download at URL until URLExpires.
type Batch struct {
	Common
	BatchType  string      `json:"batchType,omitempty"`
	URLExpires string      `json:"urlExpires,omitempty"`
	UserCount  json.Number `json:"userCount,omitempty"`
}

// Feed reports a new RSS feed item.
type Feed struct {
	Common
	Data json.RawMessage `json:"data,omitempty"`
}

// AccountActivity reports X account activity; exactly one of the event fields is usually set.
// The X objects stay raw so ids beyond 2^53 keep every digit: decode them with UseNumber.
type AccountActivity struct {
	Common
	MediaURLs             []string        `json:"mediaUrls,omitempty"`
	UserHasBlocked        *bool           `json:"userHasBlocked,omitempty"`
	TweetCreateEvents     json.RawMessage `json:"tweetCreateEvents,omitempty"`
	TweetDeleteEvents     json.RawMessage `json:"tweetDeleteEvents,omitempty"`
	FavoriteEvents        json.RawMessage `json:"favoriteEvents,omitempty"`
	FollowEvents          json.RawMessage `json:"followEvents,omitempty"`
	BlockEvents           json.RawMessage `json:"blockEvents,omitempty"`
	MuteEvents            json.RawMessage `json:"muteEvents,omitempty"`
	UserEvent             json.RawMessage `json:"userEvent,omitempty"`
	DirectMessageEvents   json.RawMessage `json:"directMessageEvents,omitempty"`
	DirectMessageTyping   json.RawMessage `json:"directMessageIndicateTypingEvents,omitempty"`
	DirectMessageMarkRead json.RawMessage `json:"directMessageMarkReadEvents,omitempty"`
	Users                 json.RawMessage `json:"users,omitempty"`
}

// Unknown is an action this version does not type; Raw keeps the whole payload.
type Unknown struct {
	Common
	Raw json.RawMessage `json:"-"`
}

// Payload decodes webhook JSON into the typed struct of its action: *Scheduled, *Social,
// *Message, *Batch, *Feed, *AccountActivity, or *Unknown for any other action.
func Payload(data []byte) (any, error) {
	env, err := Parse(data)
	if err != nil {
		return nil, err
	}
	var v any
	for _, a := range documented() {
		if a.name == env.Action {
			v = a.payload()
			break
		}
	}
	if v == nil {
		u := &Unknown{Raw: json.RawMessage(data)}
		if err := json.Unmarshal(data, &u.Common); err != nil {
			return nil, fmt.Errorf("decode %s payload: %w", env.Action, err)
		}
		return u, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", env.Action, err)
	}
	return v, nil
}

// TimeStamp is Ayrshare's timeStamp: Unix seconds as a number, or a string holding either
// digits or an RFC 3339 time. The raw JSON is kept, so re-encoding gives back what came in.
type TimeStamp struct {
	raw json.RawMessage
}

// UnmarshalJSON accepts a number, a string or null.
func (t *TimeStamp) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] == '{' || b[0] == '[' || b[0] == 't' || b[0] == 'f' {
		return fmt.Errorf("timeStamp: want number or string, got %s", b)
	}
	if string(b) == "null" {
		t.raw = nil
		return nil
	}
	t.raw = append(t.raw[:0], b...)
	return nil
}

// MarshalJSON writes the value as received.
func (t TimeStamp) MarshalJSON() ([]byte, error) {
	if len(t.raw) == 0 {
		return []byte("null"), nil
	}
	return t.raw, nil
}

// IsZero reports whether no timeStamp was present.
func (t TimeStamp) IsZero() bool { return len(t.raw) == 0 }

// Time returns the instant the timeStamp names; ok is false when it names none.
func (t TimeStamp) Time() (time.Time, bool) {
	if len(t.raw) == 0 {
		return time.Time{}, false
	}
	s := string(t.raw)
	if t.raw[0] == '"' {
		if err := json.Unmarshal(t.raw, &s); err != nil {
			return time.Time{}, false
		}
		if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return ts, true
		}
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0).UTC(), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)).UTC(), true
	}
	return time.Time{}, false
}
