package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding it strictly catches a misspelt key.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Resources       []string `json:"resources,omitempty"`
	Patches         []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	// Written by `kustomize edit set image`.
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// object is one decoded manifest document.
type object struct {
	file string // relative to deploy/
	kind string
	name string
	json []byte // strict YAML→JSON of the document
	obj  any    // *corev1.Secret, *appsv1.StatefulSet, ...
}

// splitYAML splits a multi-document stream at "---" lines and drops
// documents that hold only comments.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		cur = nil
		for _, l := range strings.Split(doc, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, []byte(doc))
				return
			}
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

// decodeStrict decodes JSON into v, failing on unknown fields and trailing
// data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

// newForKind returns an empty typed object for apiVersion and kind.
func newForKind(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion %q kind %q: teach newForKind about it", apiVersion, kind)
}

// decodeDoc decodes one YAML document strictly (duplicate keys, unknown
// fields) into the k8s.io/api type its kind names.
func decodeDoc(file string, doc []byte) (object, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	return decodeJSON(file, j)
}

func decodeJSON(file string, j []byte) (object, error) {
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(j, &head); err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	obj, err := newForKind(head.APIVersion, head.Kind)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	if err := decodeStrict(j, obj); err != nil {
		return object{}, fmt.Errorf("%s: %s %q: %w", file, head.Kind, head.Metadata.Name, err)
	}
	return object{file: file, kind: head.Kind, name: head.Metadata.Name, json: j, obj: obj}, nil
}

// loadFile decodes every document of a manifest file (path relative to
// deploy/).
func loadFile(path string) ([]object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs := splitYAML(b)
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no documents", path)
	}
	var objs []object
	for i, doc := range docs {
		o, err := decodeDoc(fmt.Sprintf("%s[%d]", path, i), doc)
		if err != nil {
			return nil, err
		}
		o.file = path
		objs = append(objs, o)
	}
	return objs, nil
}

// build does what `kustomize build dir` does for the features these
// manifests use: resources (files and directories) and strategic-merge
// patches, applied with apimachinery's strategicpatch (kustomize's merge
// follows the same patchStrategy/patchMergeKey tags). seen collects the
// files read, relative to deploy/.
func build(dir string, seen map[string]bool) ([]object, error) {
	kpath := filepath.Join(dir, "kustomization.yaml")
	seen[filepath.Clean(kpath)] = true
	kobjs, err := loadFile(kpath)
	if err != nil {
		return nil, err
	}
	k, ok := kobjs[0].obj.(*kustomization)
	if len(kobjs) != 1 || !ok {
		return nil, fmt.Errorf("%s: want one Kustomization", kpath)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", kpath, r, err)
		}
		var more []object
		if fi.IsDir() {
			more, err = build(p, seen)
		} else {
			seen[filepath.Clean(p)] = true
			more, err = loadFile(p)
		}
		if err != nil {
			return nil, err
		}
		for _, o := range more {
			if _, ok := o.obj.(*kustomization); ok {
				return nil, fmt.Errorf("%s: resource %s is a Kustomization: list its directory", kpath, r)
			}
		}
		objs = append(objs, more...)
	}
	for _, pt := range k.Patches {
		p := filepath.Join(dir, pt.Path)
		seen[filepath.Clean(p)] = true
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: patch: %w", kpath, err)
		}
		docs := splitYAML(b)
		if len(docs) != 1 {
			return nil, fmt.Errorf("%s: want one document, have %d", p, len(docs))
		}
		pj, err := yaml.YAMLToJSONStrict(docs[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(pj, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		i := -1
		for j, o := range objs {
			if o.kind == head.Kind && o.name == head.Metadata.Name {
				i = j
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("%s: patches %s %q, which the resources do not hold", p, head.Kind, head.Metadata.Name)
		}
		schema, err := newForKind(head.APIVersion, head.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		merged, err := strategicpatch.StrategicMergePatch(objs[i].json, pj, schema)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		// Decoding the result strictly catches unknown fields the patch
		// brought in.
		o, err := decodeJSON(p, merged)
		if err != nil {
			return nil, err
		}
		o.file = objs[i].file + " + " + p
		objs[i] = o
	}
	for i, o := range objs {
		if s, ok := o.obj.(*appsv1.StatefulSet); ok && len(k.Images) > 0 {
			setImages(s.Spec.Template.Spec.InitContainers, k)
			setImages(s.Spec.Template.Spec.Containers, k)
			// An overlay patches the transformed object.
			if objs[i].json, err = json.Marshal(s); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}

// setImages applies the kustomization's images (kustomize edit set image).
func setImages(cs []corev1.Container, k *kustomization) {
	for i := range cs {
		name, tag := cs[i].Image, ""
		if j := strings.LastIndex(name, "@"); j >= 0 {
			name, tag = name[:j], name[j:]
		} else if j := strings.LastIndex(name, ":"); j > strings.LastIndex(name, "/") {
			name, tag = name[:j], name[j:]
		}
		for _, img := range k.Images {
			if img.Name != name {
				continue
			}
			if img.NewName != "" {
				name = img.NewName
			}
			switch {
			case img.Digest != "":
				tag = "@" + img.Digest
			case img.NewTag != "":
				tag = ":" + img.NewTag
			}
		}
		cs[i].Image = name + tag
	}
}

// bundle is one way to deploy: the objects `kubectl apply -k dir` creates,
// plus the Secret applied separately.
type bundle struct {
	dir    string
	sts    *appsv1.StatefulSet
	cm     *corev1.ConfigMap
	svc    *corev1.Service
	secret *corev1.Secret
	objs   []object
}

func loadBundle(t *testing.T, dir string) *bundle {
	t.Helper()
	objs, err := build(dir, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{dir: dir, objs: objs}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			if b.sts != nil {
				t.Fatalf("%s: two StatefulSets", dir)
			}
			b.sts = v
		case *corev1.ConfigMap:
			if b.cm != nil {
				t.Fatalf("%s: two ConfigMaps", dir)
			}
			b.cm = v
		case *corev1.Service:
			if b.svc != nil {
				t.Fatalf("%s: two Services", dir)
			}
			b.svc = v
		case *corev1.Secret:
			t.Fatalf("%s: %s: the Secret must not be in a kustomization: `kubectl apply -k` would overwrite real credentials with placeholders", dir, o.file)
		default:
			t.Fatalf("%s: %s: unexpected %s", dir, o.file, o.kind)
		}
	}
	if b.sts == nil || b.cm == nil || b.svc == nil {
		t.Fatalf("%s: want a StatefulSet, a ConfigMap and a Service", dir)
	}
	secrets, err := loadFile("secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, ok := secrets[0].obj.(*corev1.Secret)
	if len(secrets) != 1 || !ok {
		t.Fatal("secret.yaml: want one Secret")
	}
	b.secret = s
	return b
}
