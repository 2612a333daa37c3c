from services.responder.app import service

service.main()
