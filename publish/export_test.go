package publish

// ParseAck exposes parseAck to the external tests.
var ParseAck = parseAck
