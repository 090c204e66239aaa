// helmrender: a test-side stand-in for `helm template` (no helm binary can be installed
// here). It renders a chart's templates the way Helm does — Go text/template with the
// sprig functions plus Helm's include, required, toYaml and tpl, over .Values (values.yaml
// merged with -f files), .Chart, .Release and .Template — and prints the documents. It
// fails on a parse or execution error and on any "<no value>" (a missing value). It does
// not implement Helm's lookup, .Capabilities, subcharts, hooks or schema files.
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go run . CHART_DIR [-f values.yaml] [-name RELEASE]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "helmrender: "+format+"\n", args...)
	os.Exit(1)
}

func readYAML(path string) map[string]interface{} {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		fail("%s: %v", path, err)
	}
	return out
}

func merge(base, over map[string]interface{}) map[string]interface{} {
	for key, value := range over {
		if sub, ok := value.(map[string]interface{}); ok {
			if baseSub, ok := base[key].(map[string]interface{}); ok {
				base[key] = merge(baseSub, sub)
				continue
			}
		}
		base[key] = value
	}
	return base
}

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	var files valueFiles
	flag.Var(&files, "f", "a values file merged over values.yaml (repeatable)")
	release := flag.String("name", "release", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	flag.Parse()
	if flag.NArg() != 1 {
		fail("usage: helmrender CHART_DIR [-f values.yaml] [-name RELEASE]")
	}
	chartDir := flag.Arg(0)
	chart := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	values := readYAML(filepath.Join(chartDir, "values.yaml"))
	for _, file := range files {
		values = merge(values, readYAML(file))
	}
	chartName, _ := chart["name"].(string)
	chartValues := map[string]interface{}{
		"Name": chartName, "Version": chart["version"], "AppVersion": chart["appVersion"],
	}
	paths, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(paths)

	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = func(v interface{}) string {
		var buffer bytes.Buffer
		encoder := yaml.NewEncoder(&buffer)
		encoder.SetIndent(2)
		if err := encoder.Encode(v); err != nil {
			return ""
		}
		return strings.TrimSuffix(buffer.String(), "\n")
	}
	funcs["required"] = func(message string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", message)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buffer bytes.Buffer
		err := root.ExecuteTemplate(&buffer, name, data)
		return buffer.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buffer bytes.Buffer
		err = t.Execute(&buffer, data)
		return buffer.String(), err
	}
	root.Funcs(funcs)
	base := filepath.Join(chartName, "templates")
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		name := filepath.Join(base, filepath.Base(path))
		if _, err := root.New(name).Parse(string(data)); err != nil {
			fail("%s: %v", path, err)
		}
	}
	for _, path := range paths {
		file := filepath.Base(path)
		if strings.HasPrefix(file, "_") || !(strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml")) {
			continue
		}
		name := filepath.Join(base, file)
		top := map[string]interface{}{
			"Values":   values,
			"Chart":    chartValues,
			"Release":  map[string]interface{}{"Name": *release, "Namespace": *namespace, "Service": "Helm", "IsInstall": true},
			"Template": map[string]interface{}{"Name": name, "BasePath": base},
		}
		var buffer bytes.Buffer
		if err := root.ExecuteTemplate(&buffer, name, top); err != nil {
			fail("%s: %v", name, err)
		}
		text := buffer.String()
		if strings.Contains(text, "<no value>") {
			fail("%s: a value is missing (<no value>):\n%s", name, text)
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", name, strings.TrimSpace(text))
	}
}
