module kbin.test/apiclient

go 1.22
