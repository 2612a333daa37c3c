from services.classifier.app import service

service.main()
