package schema

// DataSchemaBase is where the JSON Schema of each documented action is published; the files
// live in this repository under schema/jsonschema/ and their $id values start with it.
const DataSchemaBase = "https://ayrbridge.github.io/ayrbridge/schema/jsonschema/"

// documentedAction is one action Ayrshare documents: its name, the ce-dataschema URI of its
// JSON Schema and a constructor of its payload type.
type documentedAction struct {
	name    string
	schema  string
	payload func() any
}

// documented is the one list of the documented actions: the payload decoder, the data
// schemas and the metrics labels all read it. A function, not a variable, so no caller can
// change it; the array is built from constants and does not allocate.
func documented() [6]documentedAction {
	return [...]documentedAction{
		{ActionScheduled, DataSchemaBase + ActionScheduled + ".json", func() any { return new(Scheduled) }},
		{ActionSocial, DataSchemaBase + ActionSocial + ".json", func() any { return new(Social) }},
		{ActionMessages, DataSchemaBase + ActionMessages + ".json", func() any { return new(Message) }},
		{ActionBatch, DataSchemaBase + ActionBatch + ".json", func() any { return new(Batch) }},
		{ActionFeed, DataSchemaBase + ActionFeed + ".json", func() any { return new(Feed) }},
		{ActionAccountActivity, DataSchemaBase + ActionAccountActivity + ".json", func() any { return new(AccountActivity) }},
	}
}

// Actions returns the actions Ayrshare documents, in a fixed order.
func Actions() []string {
	list := documented()
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.name
	}
	return out
}

// DataSchema returns the ce-dataschema URI for a documented action, or "" for any other action
// (unknown actions pass through without a schema rather than with a wrong one).
func DataSchema(action string) string {
	for _, a := range documented() {
		if a.name == action {
			return a.schema
		}
	}
	return ""
}
