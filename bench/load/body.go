package load

import "bytes"

// hookIDSlot marks where Body's hookId goes; SetHookID overwrites it in place, so every
// request has a unique id without building a new body.
const hookIDSlot = "HOOKID_SLOT_24_CHARS_XX"

// bodyTemplate is a scheduled-post webhook shaped like Ayrshare's, about 1.3 KB.
const bodyTemplate = `{"action":"scheduled","subAction":"tikTokPublished","created":"2026-11-30T10:15:00Z",` +
	`"hookId":"` + hookIDSlot + `","code":200,"status":"success","id":"NAOWq7cQf1CsyT7vqTng",` +
	`"refId":"9abf1426d6ce9122ef11c72bd62e59807c5cc083","title":"Primary Profile","source":"user",` +
	`"url":"https://hooks.example.com/ayrshare","timeStamp":1764497700,"platform":"tiktok","isVideo":true,` +
	`"post":"Either write something worth reading or do something worth writing. - Benjamin Franklin. ` +
	`Wise men talk because they have something to say; fools, because they have to say something.",` +
	`"mediaUrls":["https://img.ayrshare.com/random/portrait6.mp4"],"platforms":["tiktok","instagram"],` +
	`"postIds":[{"status":"success","idShare":"v_pub_url~v2.7546563700132497463","id":"7546564355161099533",` +
	`"isVideo":true,"platform":"tiktok","postUrl":"https://www.tiktok.com/@helmar1066/video/7546564355161099533",` +
	`"mediaUrls":["https://img.ayrshare.com/random/portrait6.mp4"]},{"status":"success","id":"18045286352283921",` +
	`"platform":"instagram","postUrl":"https://www.instagram.com/p/C8Fq2bYyW1x/","usedQuota":1}],` +
	`"errors":[],"scheduleDate":"2026-11-30T10:15:00Z","idShare":"v_pub_url~v2.7546563700132497463",` +
	`"postUrl":"https://www.tiktok.com/@helmar1066/video/7546564355161099533",` +
	`"tweetId":1234567890123456789012,` +
	`"analytics":{"views":1024,"likes":77,"comments":5,"shares":3,"saves":1,"reach":980,"impressions":1500}}`

// Body returns a fresh webhook body whose hookId is unique for (prefix, conn, seq).
func Body(prefix string, conn, seq int) []byte {
	b := []byte(bodyTemplate)
	SetHookID(b, prefix, conn, seq)
	return b
}

// SetHookID writes the hookId for (prefix, conn, seq) into a body made by Body.
func SetHookID(body []byte, prefix string, conn, seq int) {
	i := bytes.Index(body, []byte(`"hookId":"`)) + len(`"hookId":"`)
	slot := body[i : i+len(hookIDSlot)]
	for j := range slot {
		slot[j] = '0'
	}
	copy(slot, prefix)
	writeBase36(slot[8:12], conn)
	writeBase36(slot[12:], seq)
}

func writeBase36(dst []byte, n int) {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[n%36]
		n /= 36
	}
}

// HookID returns the hookId Body and SetHookID write for (prefix, conn, seq).
func HookID(prefix string, conn, seq int) string {
	b := Body(prefix, conn, seq)
	i := bytes.Index(b, []byte(`"hookId":"`)) + len(`"hookId":"`)
	return string(b[i : i+len(hookIDSlot)])
}
