package main

import (
	"strconv"
	"time"
)

// actions of the generated history; event i belongs to actions[i%len(actions)].
var actions = [...]string{"social", "scheduled", "messages", "feed", "batch", "accountActivity"}

// gen makes the events of a fake history deterministically, so the preload and the history
// server produce the same bytes for the same index.
type gen struct {
	n     int
	start time.Time     // created time of event 0
	step  time.Duration // between consecutive events
}

func newGen(n int, now time.Time) gen {
	// Spread over 179 days ending a minute ago: inside the history's six months.
	start := now.Add(-179 * 24 * time.Hour)
	span := now.Add(-time.Minute).Sub(start)
	return gen{n: n, start: start, step: span / time.Duration(max(n, 1))}
}

// mix is splitmix64's finalizer: a bijection, so distinct indexes give distinct ids.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// appendID appends event i's hookId: 20 characters like Ayrshare's.
func appendID(b []byte, i int) []byte {
	var tmp [13]byte
	s := strconv.AppendUint(tmp[:0], mix(uint64(i)), 36)
	b = append(b, "bm"...)
	for range 18 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func (g gen) id(i int) string { return string(appendID(nil, i)) }

// appendEvent appends event i's payload, shaped like the documented examples of its action.
func (g gen) appendEvent(b []byte, i int) []byte {
	created := g.start.Add(time.Duration(i) * g.step).UTC()
	action := actions[i%len(actions)]
	b = append(b, `{"action":"`...)
	b = append(b, action...)
	b = append(b, `","created":"`...)
	b = created.AppendFormat(b, time.RFC3339)
	b = append(b, `","hookId":"`...)
	b = appendID(b, i)
	b = append(b, `","refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","source":"user","timeStamp":`...)
	b = strconv.AppendInt(b, created.Unix()+3, 10)
	b = append(b, `,"title":"Primary Profile","url":"https://us-central1-ayrshare.cloudfunctions.net/testFeed",`...)
	n := strconv.AppendUint(nil, mix(uint64(i))>>1, 10) // a number beyond 2^53 in most payloads
	switch action {
	case "social":
		b = append(b, `"displayName":"ayrshare","platform":"snapchat","type":"link"}`...)
	case "scheduled":
		b = append(b, `"errors":[],"id":"NAOWq7cQf1CsyT7vqTng","idShare":"v_pub_url~v2.7547022225119938615","isVideo":true,"mediaUrls":["https://img.ayrshare.com/random/portrait8.mp4"],"platform":"tiktok","platforms":["tiktok"],"post":"Wise men talk because they have something to say; fools, because they have to say something. - Plato","postIds":[{"status":"success","idShare":"v_pub_url~v2.7547022225119938615","id":"`...)
		b = append(b, n...)
		b = append(b, `","isVideo":true,"platform":"tiktok","postUrl":"https://www.tiktok.com/@helmar1066/video/`...)
		b = append(b, n...)
		b = append(b, `","mediaUrls":["https://img.ayrshare.com/random/portrait8.mp4"]}],"status":"success","subAction":"tikTokPublished"}`...)
	case "messages":
		b = append(b, `"subAction":"messageCreated","type":"received","platform":"instagram","conversationId":"aWdfZAG06MTpJR01lc3NhZA2VUaHJlYWQ6MTc4NDE0","id":"`...)
		b = append(b, n...)
		b = append(b, `","message":"Hello! Is this still available?","recipientId":"17841400000000000","senderId":"6543210987654321","senderDetails":{"name":"Jane Doe","username":"janedoe","picture":"https://example.com/p.jpg"}}`...)
	case "feed":
		b = append(b, `"data":{"title":"New post on the blog","link":"https://example.com/blog/`...)
		b = append(b, n...)
		b = append(b, `","pubDate":"`...)
		b = created.AppendFormat(b, time.RFC1123Z)
		b = append(b, `"}}`...)
	case "batch":
		b = append(b, `"batchType":"analytics","urlExpires":"`...)
		b = created.Add(24*time.Hour).AppendFormat(b, time.RFC3339)
		b = append(b, `","userCount":42}`...)
	default: // accountActivity: X ids are 64-bit and must keep every digit
		b = append(b, `"platform":"twitter","userHasBlocked":false,"tweetCreateEvents":[{"id":`...)
		b = append(b, n...)
		b = append(b, `,"id_str":"`...)
		b = append(b, n...)
		b = append(b, `","text":"@ayrshare thanks!","user":{"id":`...)
		b = append(b, n...)
		b = append(b, `,"screen_name":"someone"}}]}`...)
	}
	return b
}
