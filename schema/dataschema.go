package schema

// DataSchemaBase is where the JSON Schema of each documented action is published; the files
// live in this repository under schema/jsonschema/ and their $id values start with it.
const DataSchemaBase = "https://ayrbridge.github.io/ayrbridge/schema/jsonschema/"

// DataSchema returns the ce-dataschema URI for a documented action, or "" for any other action
// (unknown actions pass through without a schema rather than with a wrong one).
func DataSchema(action string) string {
	// Constant strings: this runs for every webhook and must not allocate.
	switch action {
	case ActionScheduled:
		return DataSchemaBase + ActionScheduled + ".json"
	case ActionSocial:
		return DataSchemaBase + ActionSocial + ".json"
	case ActionMessages:
		return DataSchemaBase + ActionMessages + ".json"
	case ActionBatch:
		return DataSchemaBase + ActionBatch + ".json"
	case ActionFeed:
		return DataSchemaBase + ActionFeed + ".json"
	case ActionAccountActivity:
		return DataSchemaBase + ActionAccountActivity + ".json"
	}
	return ""
}
