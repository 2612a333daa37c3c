from services.aggregator.app import service

service.main()
