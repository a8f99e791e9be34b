module github.com/litefs-dev/litefs/deploy

go 1.26.8
