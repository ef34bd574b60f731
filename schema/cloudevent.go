package schema

import "github.com/cloudevents/sdk-go/v2/event"

// CloudEvent returns e as an sdk-go event, for code that works with the CloudEvents SDK.
func (e Event) CloudEvent() event.Event {
	ce := event.New(event.CloudEventsVersionV1)
	ce.SetID(e.ID)
	ce.SetSource(e.Source)
	ce.SetType(e.Type)
	ce.SetTime(e.Time)
	ce.SetDataContentType(ContentType)
	if ds := DataSchema(e.Env.Action); ds != "" {
		ce.SetDataSchema(ds)
	}
	ce.DataEncoded = e.Data
	for _, x := range e.Extensions() {
		if x.Value != "" {
			ce.SetExtension(x.Name, x.Value)
		}
	}
	return ce
}
