// Package envconfig loads the commands' configuration structs from environment variables with
// caarlos0/env, naming the variable (not the Go field) when a value cannot be parsed.
package envconfig

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Load fills dst, a pointer to a struct with env tags, from environ (the process environment
// when nil). Lists lose the blank entries a stray comma leaves.
func Load(dst any, environ map[string]string) error {
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	err := env.ParseWithOptions(dst, opts)
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		if err == nil {
			trimLists(reflect.ValueOf(dst).Elem())
		}
		return err
	}
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if name := varName(reflect.TypeOf(dst).Elem(), pe.Name); name != "" {
				e = fmt.Errorf("%s: %w", name, pe.Err)
			}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// varName finds the env tag of the field called field in t or its nested structs.
func varName(t reflect.Type, field string) string {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == field {
			if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
				return name
			}
		}
		if f.Type.Kind() == reflect.Struct {
			if name := varName(f.Type, field); name != "" {
				return name
			}
		}
	}
	return ""
}

// trimLists removes blank entries and surrounding spaces from every []string field.
func trimLists(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			trimLists(f)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String && f.CanSet():
			var out []string
			for _, s := range f.Interface().([]string) {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			f.Set(reflect.ValueOf(out).Convert(f.Type()))
		}
	}
}
